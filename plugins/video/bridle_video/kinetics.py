"""The "kinetics_csv" dataset: Kinetics-400 style CSV, one ``path label`` line per video
(VideoMAE's format; a comma also separates). Paths are resolved against DATASETS.VIDEO.ROOT
(or the CSV's directory). See clip_dataset.py for items and multi-view test."""

import os
from typing import List, Tuple

from bridle.errors import MissingFileError
from bridle.registry import DATASET

from .clip_dataset import ClipDataset, build_clip_dataset

_CSV_KEYS = {"train": "TRAIN_CSV", "val": "VAL_CSV", "test": "TEST_CSV"}


def read_video_csv(csv_path: str, root: str = "", key: str = "") -> Tuple[List[str], List[int]]:
    """(paths, labels) of a ``path label`` CSV; a non-integer label on line 1 is a header.
    ``key``: the config key that named the file, for the error message."""
    if not os.path.isfile(csv_path):
        raise MissingFileError(
            f"{key + ' ' if key else 'Video CSV '}'{csv_path}' does not exist (expected a CSV of 'path label' lines)."
        )
    root = root or os.path.dirname(os.path.abspath(csv_path))
    paths, labels = [], []
    with open(csv_path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit(None, 1)
            if len(parts) != 2 and "," in line:
                parts = line.rsplit(",", 1)
            parts = [p.strip().rstrip(",") for p in parts]
            try:
                if len(parts) != 2:
                    raise ValueError
                label = int(parts[1])
            except ValueError:
                if lineno == 1:
                    continue  # header
                raise ValueError(
                    f"Video CSV '{csv_path}' line {lineno}: expected 'path label' with an integer label; got {line!r}."
                ) from None
            paths.append(os.path.join(root, parts[0]))
            labels.append(label)
    if not paths:
        raise ValueError(f"Video CSV '{csv_path}' lists no videos.")
    return paths, labels


@DATASET.register(name="kinetics_csv")
def build_kinetics_csv(cfg, split: str, mode: str) -> ClipDataset:
    if split not in _CSV_KEYS:
        raise ValueError(f"DATASET 'kinetics_csv': split must be one of {list(_CSV_KEYS)}; got '{split}'.")
    key = _CSV_KEYS[split]
    csv_path = cfg.DATASETS.VIDEO[key]
    if not csv_path:
        raise ValueError(f"DATASET 'kinetics_csv', split '{split}': set DATASETS.VIDEO.{key}.")
    paths, labels = read_video_csv(csv_path, cfg.DATASETS.VIDEO.ROOT, key=f"DATASETS.VIDEO.{key}")
    num_classes = int(cfg.MODEL.HEAD.NUM_CLASSES)
    if mode != "pretrain" and not all(0 <= y < num_classes for y in labels):
        raise ValueError(
            f"Video CSV '{csv_path}' (DATASETS.VIDEO.{key}) has labels outside "
            f"[0, {num_classes}) (MODEL.HEAD.NUM_CLASSES): min {min(labels)}, max {max(labels)}."
        )
    ds = build_clip_dataset(cfg, split, mode, paths, labels, "kinetics_csv", num_classes)
    ds.source = f"video CSV '{csv_path}'"
    return ds
