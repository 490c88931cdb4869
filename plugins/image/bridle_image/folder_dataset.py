"""The "image_folder" dataset: torchvision ImageFolder layout ``ROOT/<split>/<class>/<file>``.

An image that cannot be opened or decoded gives ``None`` (counted in ``num_failed``, warned once).
"""

import os

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder

from bridle.data.robust import RobustItemsMixin, check_mode
from bridle.errors import MissingFileError
from bridle.registry import DATASET

from .transforms import build_image_transform


def _read_rgb(path: str) -> Image.Image:
    with open(path, "rb") as f:
        img = Image.open(f)
        return img.convert("RGB")  # decodes fully, so a truncated file fails here


class ImageFolderDataset(RobustItemsMixin, Dataset):
    # PIL also signals broken files with SyntaxError and oversized ones with DecompressionBombError.
    load_errors = RobustItemsMixin.load_errors + (SyntaxError, Image.DecompressionBombError)

    def __init__(self, root: str, transform) -> None:
        # ImageFolder only lists (path, class) pairs here; reading is ours, to survive bad files.
        folder = ImageFolder(root)
        self.root = root
        self.samples = folder.samples
        self.classes = folder.classes
        self.num_classes = len(folder.classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        img = self.load_or_none(path, _read_rgb, path)
        if img is None:
            return None
        return {"input": self.transform(img), "label": torch.tensor(target, dtype=torch.long)}


@DATASET.register(name="image_folder")
def build_image_folder(cfg, split: str, mode: str) -> ImageFolderDataset:
    check_mode(mode, "DATASET 'image_folder'")
    root = cfg.DATASETS.IMAGE.ROOT
    if not root:
        raise ValueError("DATASET 'image_folder' needs DATASETS.IMAGE.ROOT (ROOT/<split>/<class>/<file>).")
    subdir = cfg.DATASETS.IMAGE.TEST_SPLIT_DIR if split == "test" else split
    path = os.path.join(root, subdir)
    if not os.path.isdir(path):
        found = None
        if os.path.isdir(root):
            found = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        raise MissingFileError(
            f"DATASET 'image_folder', split '{split}': directory '{path}' does not exist "
            f"(DATASETS.IMAGE.ROOT = '{root}'"
            + (", DATASETS.IMAGE.TEST_SPLIT_DIR" if split == "test" else "")
            + (f"; ROOT holds {found})." if found is not None else "; ROOT does not exist).")
        )
    return ImageFolderDataset(path, build_image_transform(cfg, mode))
