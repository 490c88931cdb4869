#!/usr/bin/env python
"""Mean and std of a dataset's log-mel fbanks (INPUT.AUDIO.NORM_MEAN / NORM_STD): bridle_audio.stats; --help."""

from bridle_audio.stats import main

if __name__ == "__main__":
    main()
