#!/usr/bin/env python
"""The audio demo's recipe study (bridle_audio.demo.study_main over bridle/demo/study.py):

    python tools/demo_study.py [--fresh] NAME [KEY VALUE ...]

``--help`` describes it."""

from bridle_audio.demo import study_main

if __name__ == "__main__":
    study_main()
