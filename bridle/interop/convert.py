"""Whole-checkpoint conversion between the authors' public BRIDLE code and Bridle (the library
side of tools/convert_checkpoint.py); the key mapping itself is :mod:`bridle.interop.authors`.

:func:`convert_from_authors` writes a full Bridle checkpoint (encoder; decoder, tokenizer and
estimator where their shapes fit the model the config describes), :func:`convert_to_authors`
the authors' layout (their main_finetune.py reads ``encoder_decoder.*``). Both print the
conversion report and the file written.
"""

import logging
import os
from typing import Sequence

import torch

from bridle.checkpoint import cfg_from_checkpoint, checkpoint_grid_size, load_checkpoint_file, model_state_of
from bridle.interop.authors import LAYOUTS, from_authors, to_authors

__all__ = ["LAYOUTS", "convert_from_authors", "convert_to_authors", "run"]

logger = logging.getLogger("convert_checkpoint")


def _their_state(ckpt) -> dict:
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}


def convert_from_authors(
    input: str,
    output: str,
    config_file: str,
    opts: Sequence[str] = (),
    cold_start: bool = False,
    pos_embed: str = "keep",
) -> None:
    """The authors' pretraining checkpoint ``input`` -> a full Bridle checkpoint ``output`` of
    the model that ``config_file`` and ``opts`` describe (``cold_start``: an iteration-1
    checkpoint, whose tokenizer is the frozen cold-start projection)."""
    from bridle.config import load_config
    from bridle.modeling.bridle_model import BridleModel

    cfg = load_config(config_file, opts, freeze=False)
    cfg.MODEL.TOKENIZER.COLD_START = bool(cold_start)
    cfg.freeze()
    model = BridleModel(cfg, "encoder")
    template = model.state_dict()
    theirs = _their_state(load_checkpoint_file(input))
    state, report = from_authors(theirs, template, model.encoder.grid_size, pos_embed=pos_embed)
    missing_encoder = [k for k in template if k.startswith("encoder.") and k not in state]
    if missing_encoder:
        raise SystemExit(
            f"{input}: the encoder does not fit --config-file {config_file} "
            f"({len(missing_encoder)} encoder tensors without a source of the same shape, e.g. "
            f"{missing_encoder[:3]}). Pick the config (and KEY VALUE overrides) of the model they trained.\n{report}"
        )
    full = dict(template)
    full.update(state)
    meta = {"converted_from": "authors", "source": os.path.abspath(input)}
    torch.save({"model": full, "cfg": cfg.dump(), "meta": meta}, output)
    print(report)
    print(f"wrote {output} (a full Bridle checkpoint; tensors without a source keep the init of a fresh model)")


def convert_to_authors(input: str, output: str, pos_embed: str = "keep", layout: str = "transposed") -> None:
    """A Bridle checkpoint ``input`` -> the authors' key layout ``output`` (``{'model': ...}``)."""
    ckpt = load_checkpoint_file(input)
    ours = model_state_of(ckpt)
    grid = checkpoint_grid_size(ckpt)
    if grid is None:
        raise SystemExit(
            f"{input}: cannot tell the patch grid (no stored config); convert a checkpoint written by Bridle."
        )
    cfg = cfg_from_checkpoint(ckpt)
    state, report = to_authors(ours, grid, pos_embed=pos_embed, layout=layout, quantizer=str(cfg.MODEL.QUANTIZER.NAME))
    torch.save({"model": state, "epoch": -1}, output)
    print(report)
    print(f"wrote {output} (the authors' key layout, {{'model': ...}})")


def run(args) -> None:
    """tools/convert_checkpoint.py after its argument parsing: ``--unsafe-legacy-checkpoint``
    (inherited through the environment by the loader), then the conversion asked for."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.unsafe_legacy_checkpoint:
        from bridle.checkpoint.io import TRUST_PICKLE_ENV

        os.environ[TRUST_PICKLE_ENV] = "1"
    if args.from_authors:
        convert_from_authors(
            args.input, args.output, args.config_file, list(args.opts), args.cold_start, args.pos_embed
        )
    else:
        convert_to_authors(args.input, args.output, args.pos_embed, args.layout)
