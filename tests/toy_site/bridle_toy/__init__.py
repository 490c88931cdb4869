"""bridle_toy: a 1-D signal modality added from outside the Bridle repo."""

import math
import time

import torch

from bridle.modeling import ConvPatchEmbed
from bridle.registry import DATASET, PATCH_EMBED


def add_config(cfg):
    from bridle.config import CfgNode as CN

    cfg.DATASETS.TOY = CN()
    cfg.DATASETS.TOY.NUM_ITEMS = 64  # number of synthetic signals
    cfg.DATASETS.TOY.NUM_CLASSES = 4  # number of signal classes (frequencies)
    cfg.DATASETS.TOY.SLEEP = 0.0  # seconds slept per item (lets tests interrupt a run)
    cfg.DATASETS.TOY.CORRUPT_EVERY = 0  # every k-th item is unreadable (None); 0 = none


@PATCH_EMBED.register(name="toy_signal")
def build_toy_signal_embed(cfg, embed_dim):
    p = cfg.MODEL.PATCH_EMBED
    return ConvPatchEmbed(p.INPUT_SIZE, p.PATCH_SIZE, 1, embed_dim)


class ToySignals(torch.utils.data.Dataset):
    def __init__(self, cfg, split):
        t = cfg.DATASETS.TOY
        self.n, self.k, self.sleep = t.NUM_ITEMS, t.NUM_CLASSES, t.SLEEP
        self.corrupt_every = t.CORRUPT_EVERY
        self.length = cfg.MODEL.PATCH_EMBED.INPUT_SIZE[0]
        self.offset = 0 if split == "train" else 10_000
        self.num_classes = self.k

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if self.sleep:
            time.sleep(self.sleep)
        if self.corrupt_every and i % self.corrupt_every == self.corrupt_every - 1:
            return None
        g = torch.Generator().manual_seed(i + self.offset)
        label = i % self.k
        t = torch.arange(self.length, dtype=torch.float32)
        phase = float(torch.rand((), generator=g)) * 2 * math.pi
        x = torch.sin(2 * math.pi * (label + 1) * t / self.length * 4 + phase)
        x = x + 0.1 * torch.randn(self.length, generator=g)
        return {"input": x, "label": torch.tensor(label), "index": i}


@DATASET.register(name="toy_signals")
def build_toy_signals(cfg, split, mode):
    return ToySignals(cfg, split)
