"""Write the code ids of every item of a dataset: the trained tokenizer as a product; run by
tools/tokenize_dataset.py.

``--weights``: a pretraining checkpoint holding the tokenizer, or an exported tokenizer folder
(tools/export_encoder.py --tokenizer). The model config comes from it (overridable by
--config-file and KEY VALUE, e.g. to point at another dataset). Items are read with the eval
transform ("eval" mode: one model window per item, as bridle.load_tokenizer's windows) and
labels are not needed (unlabelled data sets work). The tokenizer runs in fp32, in eval mode
(deterministic).

Codes are ``[items, tokens, levels]``: tokens in row-major order over ``grid_size`` (time first
for time series), levels of the quantizer (RQ: coarse to fine); int16 when every code id fits
(CODEBOOK_SIZE <= 32768), else int32. ``--format``:

* ``npz`` (an OUTPUT ending in .npz, the default then): one compressed file with ``codes``,
  ``index`` (dataset index of each row; unreadable items are left out and counted),
  ``grid_size``, ``labels`` (when the items have labels) and the usage below;
* ``npy`` (the default for any other OUTPUT, a folder): ``codes.npy`` (``np.load(...,
  mmap_mode="r")`` reads it without loading it), ``index.npy``, ``labels.npy``, ``usage.json``;
* ``shards`` (OUTPUT a folder): WebDataset shards of the "tensors" layout (``codes.npy`` and
  ``json`` {index, label} per item; read back as a ``shards`` dataset), written as the items
  come (bounded memory), and ``usage.json``.

Usage per level over the whole split (also printed, one line per level, and written to
``usage.json`` / the npz): ``used`` (codes used), ``cur`` (used / CODEBOOK_SIZE) and
``perplexity`` (exp of the entropy of the code distribution).
"""

import argparse
import json
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
from bridle.interop.tokenizer import build_tokenizer_from_checkpoint

logger = logging.getLogger("bridle.tokenize")
FORMATS = ("npz", "npy", "shards")


def load_tokenizer(cfg, weights: str) -> torch.nn.Module:
    """The tokenizer module of ``weights`` (checkpoint or exported folder) built on ``cfg``
    (MODEL.TOKENIZER.COLD_START set from the weights), in eval mode. For raw input of any
    length use ``bridle.load_tokenizer``, which wraps this module."""
    frozen = cfg.is_frozen()
    cfg.defrost()
    tokenizer = build_tokenizer_from_checkpoint(load_checkpoint_file(weights), cfg, weights)
    if frozen:
        cfg.freeze()
    return tokenizer


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
    """tools/tokenize_dataset.py: tokenize DATASETS.<SPLIT>, write the codes, print the usage;
    returns the path written. ``usage``: the tool's examples, shown before this module's
    description in --help."""
    p = argparse.ArgumentParser(
        description=(usage + "\n" if usage else "") + __doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--weights", required=True, help="BRIDLE checkpoint holding the tokenizer, or a tokenizer folder")
    p.add_argument("--config-file", default="", help="optional config merged over the checkpoint's")
    p.add_argument("--split", default="train", choices=["train", "val", "test"])
    p.add_argument("--output", required=True, help="output .npz, or a folder (npy / shards)")
    p.add_argument("--format", default="", choices=("",) + FORMATS, help="npz | npy | shards (default: from --output)")
    p.add_argument("--shard-size", type=int, default=10000, help="items per shard (--format shards)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s")
    fmt = args.format or ("npz" if args.output.endswith(".npz") else "npy")
    if fmt == "npz" and not args.output.endswith(".npz"):
        raise ValueError(f"--format npz: --output must end in .npz; got '{args.output}'.")
    if fmt != "npz" and args.output.endswith(".npz"):
        raise ValueError(f"--format {fmt}: --output is a folder; got '{args.output}'.")

    cfg = load_config(args.config_file, args.opts, cfg=cfg_from_checkpoint(load_checkpoint_file(args.weights)))
    name = cfg.DATASETS[args.split.upper()]
    dataset = build_dataset(cfg, name, args.split, "eval")
    device = resolve_device(cfg)
    tokenizer = load_tokenizer(cfg, args.weights).to(device)
    loader = build_test_loader(cfg, dataset)
    q = tokenizer.quantizer
    num_levels, size = int(q.num_levels), int(q.codebook_size)
    dtype = code_dtype(size)
    grid = np.asarray(getattr(tokenizer, "vit", tokenizer).patch_embed.grid_size)
    counts = torch.zeros(num_levels, size, dtype=torch.float64)
    codes, index, labels, skipped, items = [], [], [], 0, 0
    sink = None
    if fmt == "shards":
        from bridle.data.shards.writer import ShardSink

        meta = {"grid_size": grid.tolist(), "num_levels": num_levels, "codebook_size": size, "split": args.split}
        sink = ShardSink(args.output, decoder="tensors", meta=meta, prefix="codes", max_count=args.shard_size)
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
            batch_codes = out.codes.cpu().numpy().astype(dtype)
            idx = torch.as_tensor(batch["index"]) if "index" in batch else torch.arange(items, items + len(batch_codes))
            lab = batch.get("label")
            items += len(batch_codes)
            if sink is not None:
                _write_shard_items(sink, batch_codes, idx, lab)
                continue
            codes.append(batch_codes)
            index.append(idx)
            if lab is not None:
                labels.append(torch.as_tensor(lab).cpu())
    if not items:
        raise RuntimeError(f"No readable item in dataset '{name}' ({args.split}).")
    usage = usage_per_level(counts.numpy())
    summary = {
        "dataset": name,
        "split": args.split,
        "items": items,
        "skipped": skipped,
        "grid_size": grid.tolist(),
        "tokens_per_item": int(np.prod(grid)),
        "num_levels": num_levels,
        "codebook_size": size,
        "per_level": usage,
    }
    written = _write(args.output, fmt, codes, index, labels, grid, usage, summary, sink)
    logger.info(f"Wrote the codes of {items} items ({fmt}) to {written} ({skipped} unreadable items skipped)")
    print(f"Whole-dataset code usage of '{name}' ({args.split}, {items} items, {size} codes per level):")
    for u in usage:
        print(
            f"  level {u['level']}: CUR {u['cur']:.3f} ({u['used']}/{size} codes used), "
            f"perplexity {u['perplexity']:.1f}"
        )
    return written


def _write_shard_items(sink, batch_codes: np.ndarray, idx: torch.Tensor, labels) -> None:
    from bridle.data.shards.writer import encode_tensor_item

    for i in range(len(batch_codes)):
        item = {"codes": batch_codes[i], "index": int(idx[i])}
        if labels is not None:
            lab = torch.as_tensor(labels[i])
            item["label"] = lab.tolist()
        sink.write(encode_tensor_item(item))


def _write(output, fmt, codes, index, labels, grid, usage, summary, sink) -> str:
    """Write the collected codes (npz / npy) or close the shards, and the usage; returns the
    path of the codes (npz file, folder)."""
    from bridle.checkpoint.io import atomic_write_text

    if fmt == "shards":
        sink.close()
        atomic_write_text(os.path.join(output, "usage.json"), json.dumps(summary, indent=1), "usage")
        return output
    all_codes = np.concatenate(codes)
    idx = torch.cat(index).numpy()
    lab = torch.cat(labels).numpy() if labels and sum(len(x) for x in labels) == len(all_codes) else None
    if fmt == "npz":
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        extra = {"labels": lab} if lab is not None else {}
        np.savez_compressed(
            output,
            codes=all_codes,
            index=idx,
            grid_size=grid,
            used=np.array([u["used"] for u in usage]),
            cur=np.array([u["cur"] for u in usage]),
            perplexity=np.array([u["perplexity"] for u in usage]),
            **extra,
        )
        return output
    os.makedirs(output, exist_ok=True)
    np.save(os.path.join(output, "codes.npy"), all_codes)
    np.save(os.path.join(output, "index.npy"), idx)
    if lab is not None:
        np.save(os.path.join(output, "labels.npy"), lab)
    atomic_write_text(os.path.join(output, "usage.json"), json.dumps(summary, indent=1), "usage")
    return output
