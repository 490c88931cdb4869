#!/usr/bin/env python
"""`make demo-image`: BRIDLE end to end on scikit-learn's handwritten digits (bridle_image.demo;
the driver is bridle/demo/driver.py). ``--help`` lists the options."""

from bridle_image.demo import main

if __name__ == "__main__":
    main()
