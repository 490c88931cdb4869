"""The "digits" dataset: scikit-learn's 1797 real 8 x 8 handwritten digits (10 classes), offline.

Each digit is scaled to 0-255, upsampled (bicubic) to ``MODEL.PATCH_EMBED.INPUT_SIZE``, made RGB
and then goes through the image transform of the mode, like any photo. The train / val / test
split is a permutation seeded by ``DATASETS.IMAGE.DIGITS_SEED``, so it is the same on every run
and every rank. Powers ``make demo``.
"""

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from bridle.data.robust import check_mode
from bridle.registry import DATASET

from .transforms import build_image_transform, image_input_size

DIGITS_SPLITS = ("train", "val", "test", "all")


def digits_split_indices(n: int, split: str, seed: int, val_fraction: float, test_fraction: float) -> np.ndarray:
    if split not in DIGITS_SPLITS:
        raise ValueError(f"DATASET 'digits': split must be one of {list(DIGITS_SPLITS)}; got '{split}'.")
    if not (0.0 <= val_fraction and 0.0 <= test_fraction and val_fraction + test_fraction < 1.0):
        raise ValueError(
            "DATASETS.IMAGE.DIGITS_VAL_FRACTION and DIGITS_TEST_FRACTION must be >= 0 and sum to < 1; "
            f"got {val_fraction}, {test_fraction}."
        )
    order = np.random.RandomState(seed).permutation(n)
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    parts = {
        "test": order[:n_test],
        "val": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
        "all": np.arange(n),
    }
    return np.sort(parts[split])


class DigitsDataset(Dataset):
    num_classes = 10

    def __init__(
        self, split: str, size, transform, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2
    ) -> None:
        try:
            from sklearn.datasets import load_digits  # scikit-learn ships the data; no download
        except ImportError as e:
            raise ImportError(
                "DATASET 'digits' needs scikit-learn (pip install scikit-learn, or the [dev] extra)."
            ) from e

        digits = load_digits()
        idx = digits_split_indices(len(digits.target), split, seed, val_fraction, test_fraction)
        pixels = np.round(digits.images[idx] * (255.0 / 16.0)).astype(np.uint8)  # values are 0..16
        self.indices = idx
        self.images = pixels
        self.labels = torch.as_tensor(digits.target[idx], dtype=torch.long)
        self.size = (int(size[0]), int(size[1]))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i])  # uint8 [H, W] -> mode "L"
        img = img.resize((self.size[1], self.size[0]), Image.BICUBIC).convert("RGB")
        return {"input": self.transform(img), "label": self.labels[i]}


@DATASET.register(name="digits")
def build_digits(cfg, split: str, mode: str) -> DigitsDataset:
    check_mode(mode, "DATASET 'digits'")
    d = cfg.DATASETS.IMAGE
    return DigitsDataset(
        split,
        image_input_size(cfg),
        build_image_transform(cfg, mode),
        seed=d.DIGITS_SEED,
        val_fraction=d.DIGITS_VAL_FRACTION,
        test_fraction=d.DIGITS_TEST_FRACTION,
    )
