#!/usr/bin/env python
"""Prepare audio data (16 kHz clips, manifests, label CSV, weights): bridle_audio.prepare; --help."""

from bridle_audio.prepare import main

if __name__ == "__main__":
    main()
