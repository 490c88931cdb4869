#!/usr/bin/env python
"""`make demo`: BRIDLE end to end on spoken digits made with espeak-ng (bridle_audio.demo; the
driver is bridle/demo/driver.py). ``--help`` lists the options."""

from bridle_audio.demo import main

if __name__ == "__main__":
    main()
