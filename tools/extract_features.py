#!/usr/bin/env python
"""Encoder features of every item of a dataset split, saved as .npy.

    python tools/extract_features.py --config-file CFG --weights ENCODER.pth --split test \
        --out feats.npy [--cls] [KEY VALUE ...]

The encoder is rebuilt from the config and meta stored in ``--weights`` (an exported encoder, a
full pretraining checkpoint or a fine-tuned classifier checkpoint), then ``--config-file`` and
the KEY VALUE overrides are merged on top (they describe the data: DATASETS.*, INPUT.*,
MODEL.PATCH_EMBED.INPUT_SIZE ...); the positional table is resized if the patch grid differs.
Items come from DATASETS.<SPLIT> built through the DATASET registry in mode "eval".

Features: the mean of the patch tokens after the encoder's final norm, [N, D] float32 (with
``--cls``: the cls token instead). Labels, when the dataset has them, go to
``<out>_labels.npy``. Unreadable items are skipped; the dataset indices of the kept items then
go to ``<out>_index.npy``.
"""

import sys

from bridle.evaluation.features import main

if __name__ == "__main__":
    main(description=__doc__)
    sys.exit(0)
