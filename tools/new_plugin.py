#!/usr/bin/env python
"""Command line of bridle.scaffold: a new modality plugin package.

    python tools/new_plugin.py imu [--dir ~/src] [--channels 3] [--length 256]
    pip install -e ~/src/bridle-imu
    python tools/train_net.py --list | grep bridle_imu
    python tools/train_net.py --config-file ~/src/bridle-imu/configs/pretrain_tiny.yaml
    python tools/export_encoder.py output/imu_tiny/2_encoder/model_final.pth imu_encoder.pth
    python tools/train_net.py --config-file ~/src/bridle-imu/configs/finetune_tiny.yaml \\
        MODEL.WEIGHTS imu_encoder.pth
    pytest ~/src/bridle-imu/tests

The package's layout follows in --help (bridle/scaffold.py).
"""

import sys

from bridle.scaffold import main

if __name__ == "__main__":
    main(usage=__doc__)
    sys.exit(0)
