#!/usr/bin/env python
"""Command line of bridle.evaluation.tokenize_dataset (its description follows in --help).

    python tools/tokenize_dataset.py --weights output/run/1_tokenizer/model_final.pth \\
        --split train --output codes.npz [--config-file CFG] [KEY VALUE ...]
    python tools/tokenize_dataset.py --weights output/demo/export/tokenizer --split train \\
        --output output/codes --format shards

(Named tokenize_dataset.py, not tokenize.py: a tools/tokenize.py would shadow the standard
library's ``tokenize`` module for every script in tools/.)
"""

from bridle.evaluation.tokenize_dataset import main

if __name__ == "__main__":
    main(usage=__doc__)
