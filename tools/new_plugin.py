#!/usr/bin/env python
"""Scaffold a Bridle modality plugin: an installable package that trains through
tools/train_net.py as soon as it is installed.

    python tools/new_plugin.py imu [--dir ~/src] [--channels 3] [--length 256]
    pip install -e ~/src/bridle-imu
    python tools/train_net.py --list | grep bridle_imu
    python tools/train_net.py --config-file ~/src/bridle-imu/configs/pretrain_tiny.yaml
    python tools/export_encoder.py output/imu_tiny/2_encoder/model_final.pth imu_encoder.pth
    python tools/train_net.py --config-file ~/src/bridle-imu/configs/finetune_tiny.yaml \\
        MODEL.WEIGHTS imu_encoder.pth
    pytest ~/src/bridle-imu/tests

NAME (a lower-case identifier) names everything: the package ``bridle_NAME``, the entry point
``NAME`` (``BRIDLE_PLUGINS=NAME``), the config nodes ``INPUT.NAME`` / ``DATASETS.NAME`` and the
registry entries ``NAME_conv`` (PATCH_EMBED), ``NAME_span`` (MASK_GENERATOR),
``NAME_manifest`` (DATASET) and ``NAME_noise`` (TRANSFORM). The modality is a multichannel
1-D signal ``[CHANNELS, LENGTH]`` stored one ``.npy`` per item and listed in CSV manifests
(``path,label``); a small synthetic data set is written to ``example_data/`` so the configs
run at once. Replace the pieces you need; docs/DESIGN.md gives every contract.
"""

import sys

from bridle.scaffold import main

if __name__ == "__main__":
    main(description=__doc__)
    sys.exit(0)
