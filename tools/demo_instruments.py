#!/usr/bin/env python
"""The audio demo on a second real-audio set the recipe was not tuned on: General-MIDI instrument
families rendered with fluidsynth (bridle_audio.instruments; the driver is bridle/demo/driver.py).
``--help`` lists the options."""

from bridle_audio.instruments import main

if __name__ == "__main__":
    main()
