#!/usr/bin/env python
"""(Named tokenize_dataset.py, not tokenize.py: a tools/tokenize.py would shadow the standard
library's ``tokenize`` module for every script in tools/.)

Write the code ids of every item of a dataset: the trained tokenizer as a product.

    python tools/tokenize_dataset.py --weights output/run/1_tokenizer/model_final.pth \
        --split train --output codes.npz [--config-file CFG] [KEY VALUE ...]

The model config comes from the checkpoint (overridable by --config-file and KEY VALUE, e.g.
to point at another dataset). Items are read with the eval transform ("eval" mode) and labels
are not needed (unlabelled data sets work). The tokenizer runs in fp32.

The .npz holds ``codes`` [items, patches, levels] (row-major over ``grid_size``; int16 when
every code id fits, i.e. CODEBOOK_SIZE <= 32767, else int32), ``index`` (dataset index of each
row; unreadable items are left out and counted), ``grid_size`` and the whole-dataset usage per
level: ``used`` (codes used), ``cur`` (used / CODEBOOK_SIZE) and ``perplexity`` (exp of the
entropy of the code distribution). The usage is also printed, one line per level.
"""

from bridle.evaluation.tokenize_dataset import main

if __name__ == "__main__":
    main(description=__doc__)
