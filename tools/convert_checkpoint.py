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
import logging
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bridle.checkpoint import cfg_from_checkpoint, checkpoint_grid_size, load_checkpoint_file, model_state_of  # noqa: E402
from bridle.interop.authors import LAYOUTS, from_authors, to_authors  # noqa: E402

logger = logging.getLogger("convert_checkpoint")


def _their_state(ckpt) -> dict:
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def convert_from_authors(args) -> None:
    from bridle.config import get_cfg
    from bridle.modeling.bridle_model import BridleModel

    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(list(args.opts))
    cfg.MODEL.TOKENIZER.COLD_START = bool(args.cold_start)
    cfg.freeze()
    model = BridleModel(cfg, "encoder")
    template = model.state_dict()
    theirs = _their_state(load_checkpoint_file(args.input))
    state, report = from_authors(theirs, template, model.encoder.grid_size, pos_embed=args.pos_embed)
    missing_encoder = [k for k in template if k.startswith("encoder.") and k not in state]
    if missing_encoder:
        raise SystemExit(
            f"{args.input}: the encoder does not fit --config-file {args.config_file} "
            f"({len(missing_encoder)} encoder tensors without a source of the same shape, e.g. "
            f"{missing_encoder[:3]}). Pick the config (and KEY VALUE overrides) of the model they trained.\n{report}"
        )
    full = dict(template)
    full.update(state)
    torch.save({"model": full, "cfg": cfg.dump(), "meta": {"converted_from": "authors", "source": os.path.abspath(args.input)}},
               args.output)
    print(report)
    print(f"wrote {args.output} (a full Bridle checkpoint; tensors without a source keep the init of a fresh model)")


def convert_to_authors(args) -> None:
    ckpt = load_checkpoint_file(args.input)
    ours = model_state_of(ckpt)
    grid = checkpoint_grid_size(ckpt)
    if grid is None:
        raise SystemExit(f"{args.input}: cannot tell the patch grid (no stored config); convert a checkpoint written by Bridle.")
    cfg = cfg_from_checkpoint(ckpt)
    state, report = to_authors(ours, grid, pos_embed=args.pos_embed, layout=args.layout,
                               quantizer=str(cfg.MODEL.QUANTIZER.NAME))
    torch.save({"model": state, "epoch": -1}, args.output)
    print(report)
    print(f"wrote {args.output} (the authors' key layout, {{'model': ...}})")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_mutually_exclusive_group(required=True)
    d.add_argument("--from-authors", action="store_true", help="authors' checkpoint -> Bridle")
    d.add_argument("--to-authors", action="store_true", help="Bridle checkpoint -> authors' layout")
    p.add_argument("--input", required=True, help="checkpoint to convert")
    p.add_argument("--output", required=True, help="where to write the converted checkpoint")
    p.add_argument("--config-file", default="configs/audio/pretrain_rq.yaml",
                   help="--from-authors: the config of the model they trained (default %(default)s)")
    p.add_argument("--cold-start", action="store_true", help="--from-authors: an iteration-1 (cold-start tokenizer) checkpoint")
    p.add_argument("--pos-embed", choices=("keep", "regenerate"), default="keep",
                   help="copy the position tables as stored (default) or write the target's own")
    p.add_argument("--layout", choices=LAYOUTS, default="transposed",
                   help="--to-authors --pos-embed regenerate: their table layout of a non-square 2-D grid")
    p.add_argument("--unsafe-legacy-checkpoint", action="store_true",
                   help="allow a pickled checkpoint (the authors' files hold an argparse Namespace); only for trusted files")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="--from-authors: KEY VALUE config overrides")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.unsafe_legacy_checkpoint:
        from bridle.checkpoint.io import TRUST_PICKLE_ENV

        os.environ[TRUST_PICKLE_ENV] = "1"
    if args.from_authors:
        convert_from_authors(args)
    else:
        convert_to_authors(args)


if __name__ == "__main__":
    main()
