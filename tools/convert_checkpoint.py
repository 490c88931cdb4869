#!/usr/bin/env python
"""Convert BRIDLE checkpoints between the authors' public code (github HoangNguyenM/bridle) and Bridle.

Authors' pretraining checkpoint -> a full Bridle checkpoint (encoder; decoder, tokenizer and
estimator where their shapes fit the model the config describes):

    python tools/convert_checkpoint.py --from-authors --config-file configs/audio/pretrain_rq.yaml \\
        --input checkpoint-130.pth --output bridle.pth [--cold-start] [KEY VALUE ...]

The result starts any of our phases (MODEL.WEIGHTS) or fine-tuning, and
tools/export_encoder.py exports its encoder. Use the config of the model they trained (their
audio recipe: configs/audio/pretrain_rq.yaml with MODEL.DECODER.BLOCK swin_v2; --cold-start
for an iteration-1 checkpoint, whose tokenizer is the frozen cold-start projection).

Bridle checkpoint -> the authors' layout (their main_finetune.py reads ``encoder_decoder.*``):

    python tools/convert_checkpoint.py --to-authors --input output/.../model_final.pth --output theirs.pth

Position tables are copied as stored (``--pos-embed keep``: the converted model computes what
the source computed). The authors' table of a non-square 2-D grid is the sin-cos table of the
swapped grid (their ``patch_hw`` is (mel, time) = (8, 64) for a 64 x 8 audio grid); the report
names the layout found. ``--pos-embed regenerate`` writes the target's own tables instead (ours:
sin-cos of the grid, which our resize for another input length reads correctly; theirs:
``--layout``). Their checkpoints pickle an argparse Namespace: loading them needs
``--unsafe-legacy-checkpoint`` (only for files you trust).
"""

import argparse

from bridle.interop.convert import LAYOUTS, run


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_mutually_exclusive_group(required=True)
    d.add_argument("--from-authors", action="store_true", help="authors' checkpoint -> Bridle")
    d.add_argument("--to-authors", action="store_true", help="Bridle checkpoint -> authors' layout")
    p.add_argument("--input", required=True, help="checkpoint to convert")
    p.add_argument("--output", required=True, help="where to write the converted checkpoint")
    p.add_argument(
        "--config-file",
        default="configs/audio/pretrain_rq.yaml",
        help="--from-authors: the config of the model they trained (default %(default)s)",
    )
    p.add_argument(
        "--cold-start", action="store_true", help="--from-authors: an iteration-1 (cold-start tokenizer) checkpoint"
    )
    p.add_argument(
        "--pos-embed",
        choices=("keep", "regenerate"),
        default="keep",
        help="copy the position tables as stored (default) or write the target's own",
    )
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="transposed",
        help="--to-authors --pos-embed regenerate: their table layout of a non-square 2-D grid",
    )
    p.add_argument(
        "--unsafe-legacy-checkpoint",
        action="store_true",
        help="allow a pickled checkpoint (the authors' files hold an argparse Namespace); only for trusted files",
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, help="--from-authors: KEY VALUE config overrides")
    return p.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
