"""Encoder features of every item of a dataset split, saved as .npy (the library side of
tools/extract_features.py).

The encoder is rebuilt from the config and meta stored in the weights (an exported encoder, a
full pretraining checkpoint or a fine-tuned classifier checkpoint), then the config file and the
KEY VALUE overrides are merged on top (they describe the data); the positional table is resized
if the patch grid differs. Items come from DATASETS.<SPLIT> built through the DATASET registry in
mode "eval". Features: the mean of the patch tokens after the encoder's final norm, [N, D]
float32 (or the cls token); labels and, when items were unreadable, the kept dataset indices go
next to them.
"""

import argparse
import logging
import os
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

logger = logging.getLogger("bridle.extract_features")


class _Indexed(Dataset):
    """Adds the item's dataset index under ``"index"``."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        item = self.dataset[i]
        if item is None:
            return None
        item = dict(item)
        item["index"] = torch.tensor(i)
        return item


# The batch entries a dataset's device_transform reads (features are computed on the device).
_MODEL_KEYS = ("input", "num_samples")


def parse_args(argv=None, description: Optional[str] = None):
    """The command line of tools/extract_features.py (``description``: its --help text)."""
    p = argparse.ArgumentParser(
        description=__doc__ if description is None else description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config-file", default="", metavar="FILE", help="config describing the data (and model input)")
    p.add_argument("--weights", required=True, help="exported encoder or Bridle checkpoint")
    p.add_argument("--split", default="test", help="train | val | test: reads DATASETS.<SPLIT>")
    p.add_argument("--out", required=True, help="output .npy of features")
    p.add_argument("--cls", action="store_true", help="use the cls token instead of the mean patch token")
    p.add_argument("--batch-size", type=int, default=0, help="batch size (default TEST.BATCH_SIZE_PER_GPU)")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=None, help="KEY VALUE config overrides")
    return p.parse_args(argv)


def build_cfg(args, ckpt: dict):
    from bridle.checkpoint import apply_encoder_meta, cfg_from_checkpoint
    from bridle.config import get_cfg, load_config

    cfg = load_config(args.config_file, args.opts, freeze=False, cfg=cfg_from_checkpoint(ckpt, get_cfg()))
    apply_encoder_meta(cfg, ckpt.get("meta"))  # the weights fix the encoder's dims
    cfg.MODEL.ENCODER.DROP_PATH = 0.0
    cfg.MODEL.ENCODER.GRAD_CHECKPOINT = False
    return cfg


def extract(cfg, ckpt: dict, split: str, use_cls: bool = False, batch_size: int = 0):
    """(features [N, D] float32, labels or None, kept dataset indices [N], total items)."""
    from bridle.checkpoint import load_encoder_weights
    from bridle.data.batch import device_transform_of, prepare_batch
    from bridle.data.build import build_dataset, build_test_loader
    from bridle.engine.defaults import resolve_device
    from bridle.modeling.vit import build_encoder

    key = split.upper()
    if key not in cfg.DATASETS or not isinstance(cfg.DATASETS[key], str):
        raise ValueError(f"--split {split}: there is no DATASETS.{key} entry (use train, val or test).")
    device = resolve_device(cfg)
    encoder = build_encoder(cfg)
    load_encoder_weights(encoder, ckpt, strict_encoder=True)
    encoder.to(device).eval()
    dataset = build_dataset(cfg, cfg.DATASETS[key], split, "eval")
    loader = build_test_loader(cfg, _Indexed(dataset), batch_size=batch_size or None)
    feats, labels, index = [], [], []
    with torch.no_grad():
        for batch in loader:
            if batch.get("empty", False):
                continue
            model_input = {k: v for k, v in batch.items() if k in _MODEL_KEYS}
            x = prepare_batch(model_input, device, device_transform_of(dataset))["input"]
            tokens = encoder(x)
            f = tokens[:, 0] if use_cls else tokens[:, 1:].mean(dim=1)
            feats.append(f.float().cpu())
            index.append(batch["index"])
            if "label" in batch:
                labels.append(batch["label"])
    if not feats:
        raise RuntimeError(f"DATASETS.{key} '{cfg.DATASETS[key]}' produced no readable item.")
    out_labels = torch.cat(labels).numpy() if labels and len(labels) == len(feats) else None
    return torch.cat(feats).numpy().astype(np.float32), out_labels, torch.cat(index).numpy(), len(dataset)


def main(argv=None, description: Optional[str] = None) -> dict:
    """tools/extract_features.py: extract and write; returns {"features"[, "labels", "index"]: path}."""
    from bridle.checkpoint import load_checkpoint_file
    from bridle.utils.logger import setup_logger

    args = parse_args(argv, description)
    setup_logger("", 0, name="bridle")
    ckpt = load_checkpoint_file(args.weights)
    cfg = build_cfg(args, ckpt)
    feats, labels, index, total = extract(cfg, ckpt, args.split, args.cls, args.batch_size)
    out = args.out if args.out.endswith(".npy") else args.out + ".npy"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    stem = out[: -len(".npy")]
    np.save(out, feats)
    written = {"features": out}
    if labels is not None:
        np.save(stem + "_labels.npy", labels)
        written["labels"] = stem + "_labels.npy"
    if len(index) != total:
        np.save(stem + "_index.npy", index)
        written["index"] = stem + "_index.npy"
        logger.warning(
            f"{total - len(index)} of {total} items were unreadable and skipped; kept indices in {written['index']}"
        )
    logger.info(f"Features {feats.shape} of DATASETS.{args.split.upper()} written: {written}")
    return written
