"""Write the code ids of every item of a dataset: the trained tokenizer as a product; run by
tools/tokenize_dataset.py.

The model config comes from the checkpoint (overridable by --config-file and KEY VALUE, e.g.
to point at another dataset). Items are read with the eval transform ("eval" mode) and labels
are not needed (unlabelled data sets work). The tokenizer runs in fp32.

The .npz holds ``codes`` [items, patches, levels] (row-major over ``grid_size``; int16 when
every code id fits, i.e. CODEBOOK_SIZE <= 32767, else int32), ``index`` (dataset index of each
row; unreadable items are left out and counted), ``grid_size`` and the whole-dataset usage per
level: ``used`` (codes used), ``cur`` (used / CODEBOOK_SIZE) and ``perplexity`` (exp of the
entropy of the code distribution). The usage is also printed, one line per level.
"""

import argparse
import logging
import math
import os
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from bridle.checkpoint import cfg_from_checkpoint, load_checkpoint_file
from bridle.config import load_config
from bridle.data.batch import device_transform_of, prepare_batch
from bridle.data.build import build_dataset, build_test_loader
from bridle.engine import resolve_device
from bridle.modeling.tokenizer import build_tokenizer
from bridle.modeling.vit import vit_dims
from bridle.trainers.pretrain import checkpoint_state, has_trained_tokenizer

logger = logging.getLogger("bridle.tokenize")


def load_tokenizer(cfg, weights: str) -> torch.nn.Module:
    state = checkpoint_state(weights)
    tok_state = {k[len("tokenizer.") :]: v for k, v in state.items() if k.startswith("tokenizer.")}
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
    if not getattr(tokenizer.quantizer, "is_initialized", lambda: True)():  # optional (codebook-free quantizers)
        raise ValueError(f"The tokenizer in '{weights}' has uninitialised codebooks.")
    return tokenizer.eval()


def code_dtype(codebook_size: int):
    """The narrowest of int16 / int32 that holds every code id ``0 .. codebook_size - 1``."""
    return np.int16 if codebook_size - 1 <= np.iinfo(np.int16).max else np.int32


def usage_per_level(counts: np.ndarray) -> list:
    """``counts [L, K]`` (rows per code) -> per level: used codes, CUR, perplexity."""
    out = []
    for level, c in enumerate(counts):
        p = c[c > 0] / max(c.sum(), 1)
        out.append(
            {
                "level": level,
                "used": int((c > 0).sum()),
                "cur": float((c > 0).mean()),
                "perplexity": float(math.exp(-(p * np.log(p)).sum())) if p.size else 0.0,
            }
        )
    return out


def main(argv=None, usage: Optional[str] = None) -> str:
    """tools/tokenize_dataset.py: tokenize DATASETS.<SPLIT>, write the .npz, print the usage;
    returns the path written. ``usage``: the tool's examples, shown before this module's
    description in --help."""
    p = argparse.ArgumentParser(
        description=(usage + "\n" if usage else "") + __doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--weights", required=True, help="BRIDLE checkpoint holding the tokenizer")
    p.add_argument("--config-file", default="", help="optional config merged over the checkpoint's")
    p.add_argument("--split", default="train", choices=["train", "val", "test"])
    p.add_argument("--output", required=True, help="output .npz")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s")

    cfg = load_config(args.config_file, args.opts, cfg=cfg_from_checkpoint(load_checkpoint_file(args.weights)))
    name = cfg.DATASETS[args.split.upper()]
    dataset = build_dataset(cfg, name, args.split, "eval")
    device = resolve_device(cfg)
    tokenizer = load_tokenizer(cfg, args.weights).to(device)
    loader = build_test_loader(cfg, dataset)
    q = tokenizer.quantizer
    num_levels, size = int(q.num_levels), int(q.codebook_size)
    dtype = code_dtype(size)
    counts = torch.zeros(num_levels, size, dtype=torch.float64)
    codes, index, skipped = [], [], 0
    with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
        for batch in tqdm(loader, desc=f"tokenize {name}/{args.split}"):
            skipped += int(batch["num_skipped"])
            if batch.get("empty"):
                continue
            model_input = {k: batch[k] for k in ("input", "num_samples") if k in batch}
            out = tokenizer(prepare_batch(model_input, device, device_transform_of(dataset))["input"].float())
            c = out.codes.reshape(-1, num_levels).cpu()
            for level in range(num_levels):
                counts[level] += torch.bincount(c[:, level], minlength=size).double()
            codes.append(out.codes.cpu().numpy().astype(dtype))
            if "index" in batch:
                index.append(torch.as_tensor(batch["index"]))
    if not codes:
        raise RuntimeError(f"No readable item in dataset '{name}' ({args.split}).")
    all_codes = np.concatenate(codes)
    idx = torch.cat(index).numpy() if index else np.arange(len(all_codes))
    grid = np.asarray(getattr(tokenizer, "vit", tokenizer).patch_embed.grid_size)
    usage = usage_per_level(counts.numpy())
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    np.savez_compressed(
        args.output,
        codes=all_codes,
        index=idx,
        grid_size=grid,
        used=np.array([u["used"] for u in usage]),
        cur=np.array([u["cur"] for u in usage]),
        perplexity=np.array([u["perplexity"] for u in usage]),
    )
    logger.info(
        f"Wrote {all_codes.shape} codes ({all_codes.dtype}) to {args.output} ({skipped} unreadable items skipped)"
    )
    print(f"Whole-dataset code usage of '{name}' ({args.split}, {len(all_codes)} items, {size} codes per level):")
    for u in usage:
        print(
            f"  level {u['level']}: CUR {u['cur']:.3f} ({u['used']}/{size} codes used), "
            f"perplexity {u['perplexity']:.1f}"
        )
    return args.output
