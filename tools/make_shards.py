#!/usr/bin/env python
"""Write WebDataset tar shards (+ ``index.json``) for the core "shards" dataset.

One source per run (``--help`` lists the installed ones: ``--dataset`` from the core, the file
formats from the plugins), e.g.::

  python tools/make_shards.py --image-folder imagenet/train --out shards/in1k_train --shard-size 1250
  python tools/make_shards.py --dataset digits --config-file configs/image/tiny_pretrain.yaml \\
      --split train --out shards/digits

Then: ``DATASETS.TRAIN shards DATASETS.SHARDS.TRAIN_INDEX shards/in1k_train/index.json``.
The format and every source: docs/data.md.
"""

from bridle.data.shards import write_shards_cli

if __name__ == "__main__":
    write_shards_cli()
