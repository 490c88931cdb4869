#!/usr/bin/env python
"""`make demo-video`: BRIDLE end to end on moving handwritten digits written as H.264 clips, with
an appearance (which digit) and a motion (which direction) label set (bridle_video.demo; the
driver is bridle/demo/driver.py). ``--help`` lists the options."""

from bridle_video.demo import main

if __name__ == "__main__":
    main()
