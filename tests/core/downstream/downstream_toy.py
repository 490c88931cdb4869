"""Helpers of the downstream tests: tiny synthetic labelled datasets and a tiny config.

DATASET entries registered here (no plugin needed):
* "toy_clusters": single-label; class c is a fixed random pattern (per class) plus noise, so a
  tiny ViT beats chance after a few dozen steps. Splits "train" (96 items), "val", "test" (48).
* "toy_clusters_fold1" / "toy_clusters_fold2": the same task with other noise draws (used as
  cross-validation folds through DATASETS.TEST).
* "toy_multilabel": multi-hot float labels (sum of the patterns of the active classes).
* "toy_broken": "toy_clusters" whose every 5th item is unreadable (None).
"""

import torch
from torch.utils.data import Dataset

from bridle.config import get_cfg
from bridle.registry import DATASET, TRANSFORM

_SIZES = {"train": 96, "val": 48, "test": 48}
_SPLIT_SEED = {"train": 1, "val": 2, "test": 3}


class ToyDataset(Dataset):
    NOISE = 3.0  # std of the per-pixel noise (the class patterns have std 1): ~80 % after 12 steps

    def __init__(
        self, cfg, split: str, mode: str, seed_offset: int = 0, multi_label: bool = False, broken_every: int = 0
    ) -> None:
        if split not in _SIZES:
            raise ValueError(f"toy dataset: split must be one of {list(_SIZES)}; got '{split}'.")
        self.mode = mode
        self.num_classes = int(cfg.MODEL.HEAD.NUM_CLASSES)
        shape = (int(cfg.MODEL.PATCH_EMBED.IN_CHANS), *[int(s) for s in cfg.MODEL.PATCH_EMBED.INPUT_SIZE])
        protos = torch.randn((self.num_classes, *shape), generator=torch.Generator().manual_seed(1234))
        g = torch.Generator().manual_seed(100 * seed_offset + _SPLIT_SEED[split])
        n = _SIZES[split]
        if multi_label:
            self.labels = (torch.rand(n, self.num_classes, generator=g) < 0.4).float()
            signal = torch.einsum("nc,c...->n...", self.labels, protos)
        else:
            self.labels = torch.arange(n) % self.num_classes
            signal = protos[self.labels]
        self.inputs = signal + self.NOISE * torch.randn((n, *shape), generator=g)
        self.broken_every = broken_every

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        if self.broken_every and i % self.broken_every == 0:
            return None
        return {"input": self.inputs[i], "label": self.labels[i]}


@DATASET.register(name="toy_clusters")
def build_toy_clusters(cfg, split, mode):
    return ToyDataset(cfg, split, mode)


@DATASET.register(name="toy_clusters_fold1")
def build_toy_fold1(cfg, split, mode):
    return ToyDataset(cfg, split, mode, seed_offset=1)


@DATASET.register(name="toy_clusters_fold2")
def build_toy_fold2(cfg, split, mode):
    return ToyDataset(cfg, split, mode, seed_offset=2)


@DATASET.register(name="toy_multilabel")
def build_toy_multilabel(cfg, split, mode):
    return ToyDataset(cfg, split, mode, multi_label=True)


@DATASET.register(name="toy_broken")
def build_toy_broken(cfg, split, mode):
    return ToyDataset(cfg, split, mode, broken_every=5)


TINY_OPTS = [
    "TRAINER.NAME",
    "finetune",
    "MODEL.DEVICE",
    "cpu",
    "MODEL.PATCH_EMBED.NAME",
    "conv",
    "MODEL.PATCH_EMBED.IN_CHANS",
    1,
    "MODEL.PATCH_EMBED.INPUT_SIZE",
    [32, 32],
    "MODEL.PATCH_EMBED.PATCH_SIZE",
    [8, 8],
    "MODEL.ENCODER.EMBED_DIM",
    64,
    "MODEL.ENCODER.DEPTH",
    2,
    "MODEL.ENCODER.NUM_HEADS",
    2,
    "MODEL.HEAD.NUM_CLASSES",
    4,
    "DATASETS.TRAIN",
    "toy_clusters",
    "DATASETS.TEST",
    "toy_clusters",
    "DATALOADER.NUM_WORKERS",
    0,
    "DATALOADER.PIN_MEMORY",
    False,
    "SOLVER.BATCH_SIZE_PER_GPU",
    16,
    "SOLVER.MAX_ITER",
    40,
    "SOLVER.WARMUP_ITERS",
    4,
    "SOLVER.BASE_LR",
    2e-3,
    "SOLVER.WEIGHT_DECAY",
    0.05,
    "SOLVER.CHECKPOINT_PERIOD",
    100000,
    "TEST.BATCH_SIZE_PER_GPU",
    20,
    "TEST.EVAL_PERIOD",
    0,
    "PROGRESS_BAR",
    False,
    "LOG_PERIOD",
    20,
]


def tiny_cfg(output_dir, *opts):
    """A tiny downstream config (64-wide, 2-block ViT over 32x32 one-channel inputs)."""
    cfg = get_cfg(load_plugins=False)
    pairs = list(TINY_OPTS) + ["OUTPUT_DIR", str(output_dir)] + list(opts)
    for k, v in zip(pairs[0::2], pairs[1::2]):
        node = cfg
        *parents, last = k.split(".")
        for p in parents:
            node = node[p]
        if last not in node:
            raise KeyError(f"tiny_cfg: unknown key {k}")
        node[last] = v
    return cfg


# Number of batches the "toy_count" batch transform has seen (fine-tuning applies it, linear
# probing must not).
TRANSFORM_CALLS = {"n": 0}


@TRANSFORM.register(name="toy_count")
def build_toy_count(cfg, mode):
    def apply(batch):
        TRANSFORM_CALLS["n"] += 1
        return batch

    return apply


def cli_opts(output_dir, *opts):
    """TINY_OPTS (+ opts) as command-line KEY VALUE strings."""
    pairs = list(TINY_OPTS) + ["OUTPUT_DIR", str(output_dir)] + list(opts)
    return [str(p) for p in pairs]
