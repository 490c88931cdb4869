#!/usr/bin/env python
"""Export the encoder of a Bridle checkpoint.

    python tools/export_encoder.py output/run/model_final.pth encoder.pth [--timm encoder_timm.pth]

SRC: a full BRIDLE checkpoint (pretraining: keys ``encoder.*``), a fine-tuned classifier
checkpoint, or an exported encoder. DST: ``{"model": encoder state dict (timm layout), "cfg":
YAML text, "meta": {embed_dim, depth, num_heads, grid_size, format}}``, loadable with
``bridle.load_encoder(DST)`` and usable as MODEL.WEIGHTS of the finetune / linear_probe
trainers. ``--timm`` also writes the bare timm-layout state dict.
"""

import argparse
import json
import sys


def main(argv=None) -> dict:
    from bridle.checkpoint import export_encoder
    from bridle.utils.logger import setup_logger

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="checkpoint to read")
    p.add_argument("dst", help="exported encoder to write")
    p.add_argument("--timm", default=None, metavar="DST_TIMM", help="also write the plain timm-layout state dict")
    args = p.parse_args(argv)
    setup_logger("", 0, name="bridle")
    meta = export_encoder(args.src, args.dst, timm_path=args.timm)
    print(json.dumps(meta))
    return meta


if __name__ == "__main__":
    main()
    sys.exit(0)
