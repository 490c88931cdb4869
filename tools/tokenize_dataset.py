#!/usr/bin/env python
"""(Named tokenize_dataset.py, not tokenize.py: a tools/tokenize.py would shadow the standard
library's ``tokenize`` module for every script in tools/.)

Write the code ids of every item of a dataset: the trained tokenizer as a product.

    python tools/tokenize_dataset.py --weights output/run/1_tokenizer/model_final.pth \
        --split train --output codes.npz [--config-file CFG] [KEY VALUE ...]

The model config comes from the checkpoint (overridable by --config-file and KEY VALUE, e.g.
to point at another dataset). The .npz holds ``codes`` int16 [items, patches, levels]
(row-major over ``grid_size``), ``index`` (dataset index of each row; unreadable items are
left out and counted) and ``grid_size``.
"""
import argparse
import logging
import os

import numpy as np
import torch
from tqdm import tqdm

from bridle.checkpoint import cfg_from_checkpoint, load_checkpoint_file
from bridle.data.build import build_dataset, build_test_loader
from bridle.engine import resolve_device
from bridle.modeling.tokenizer import build_tokenizer
from bridle.modeling.vit import vit_dims
from bridle.trainers.pretrain import checkpoint_state, has_trained_tokenizer

logger = logging.getLogger("bridle.tokenize")


def load_tokenizer(cfg, weights: str) -> torch.nn.Module:
    state = checkpoint_state(weights)
    tok_state = {k[len("tokenizer."):]: v for k, v in state.items() if k.startswith("tokenizer.")}
    if not tok_state:
        raise ValueError(f"'{weights}' holds no tokenizer (no 'tokenizer.*' keys).")
    cfg.defrost()
    cfg.MODEL.TOKENIZER.COLD_START = not has_trained_tokenizer(state)
    cfg.freeze()
    tokenizer = build_tokenizer(cfg, vit_dims(cfg.MODEL.ENCODER)[0])
    missing, unexpected = tokenizer.load_state_dict(tok_state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"Tokenizer weights in '{weights}' do not match the config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}."
        )
    if not tokenizer.quantizer.is_initialized():
        raise ValueError(f"The tokenizer in '{weights}' has uninitialised codebooks.")
    return tokenizer.eval()


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="BRIDLE checkpoint holding the tokenizer")
    p.add_argument("--config-file", default="", help="optional config merged over the checkpoint's")
    p.add_argument("--split", default="train", choices=["train", "val", "test"])
    p.add_argument("--output", required=True, help="output .npz")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s")

    cfg = cfg_from_checkpoint(load_checkpoint_file(args.weights))
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts or [])
    cfg.freeze()
    name = cfg.DATASETS[args.split.upper()]
    dataset = build_dataset(cfg, name, args.split, "eval")
    device = resolve_device(cfg)
    tokenizer = load_tokenizer(cfg, args.weights).to(device)
    loader = build_test_loader(cfg, dataset)
    codes, index, skipped = [], [], 0
    with torch.no_grad():
        for batch in tqdm(loader, desc=f"tokenize {name}/{args.split}"):
            skipped += int(batch["num_skipped"])
            if batch.get("empty"):
                continue
            out = tokenizer(batch["input"].to(device))
            codes.append(out.codes.to(torch.int16).cpu())
            if "index" in batch:
                index.append(torch.as_tensor(batch["index"]))
    if not codes:
        raise RuntimeError(f"No readable item in dataset '{name}' ({args.split}).")
    all_codes = torch.cat(codes).numpy()
    idx = torch.cat(index).numpy() if index else np.arange(len(all_codes))
    grid = np.asarray(getattr(tokenizer, "vit", tokenizer).patch_embed.grid_size)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    np.savez_compressed(args.output, codes=all_codes, index=idx, grid_size=grid)
    logger.info(f"Wrote {all_codes.shape} codes to {args.output} ({skipped} unreadable items skipped)")
    return args.output


if __name__ == "__main__":
    main()
