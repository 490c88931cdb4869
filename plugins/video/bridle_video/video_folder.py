"""The "video_folder" dataset: unlabeled clips found recursively under DATASETS.VIDEO.FOLDER_ROOT
(for pretraining; every split reads the same folder). Items as in clip_dataset.py, without "label"."""

import os
from typing import List, Sequence

from bridle.errors import MissingFileError
from bridle.registry import DATASET

from .clip_dataset import ClipDataset, build_clip_dataset


def find_videos(root: str, extensions: Sequence[str]) -> List[str]:
    exts = tuple(e.lower() for e in extensions)
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        found.extend(os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(exts))
    return found


@DATASET.register(name="video_folder")
def build_video_folder(cfg, split: str, mode: str) -> ClipDataset:
    d = cfg.DATASETS.VIDEO
    if not d.FOLDER_ROOT or not os.path.isdir(d.FOLDER_ROOT):
        raise MissingFileError(
            f"DATASET 'video_folder': DATASETS.VIDEO.FOLDER_ROOT '{d.FOLDER_ROOT}' is not a directory."
        )
    paths = find_videos(d.FOLDER_ROOT, d.FOLDER_EXTENSIONS)
    if not paths:
        raise ValueError(
            f"DATASET 'video_folder': no file with an extension in DATASETS.VIDEO.FOLDER_EXTENSIONS "
            f"{list(d.FOLDER_EXTENSIONS)} under '{d.FOLDER_ROOT}'."
        )
    return build_clip_dataset(cfg, split, mode, paths, None, "video_folder")
