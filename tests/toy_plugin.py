"""A third-party Bridle plugin written to a temp dir by the tests (not part of the repo):
a 1-D "signal" modality with its own patch embedder, dataset and config keys, found through
its own ``bridle.plugins`` entry point (a .dist-info, exactly what pip writes)."""
import os
import textwrap

PLUGIN_SOURCE = '''
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
'''


def write_toy_plugin(root: str) -> str:
    """Write the package and its dist-info under ``root``; returns the dir for PYTHONPATH."""
    pkg = os.path.join(root, "bridle_toy")
    os.makedirs(pkg, exist_ok=True)
    with open(os.path.join(pkg, "__init__.py"), "w") as f:
        f.write(textwrap.dedent(PLUGIN_SOURCE))
    info = os.path.join(root, "bridle_toy-0.1.dist-info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\nName: bridle-toy\nVersion: 0.1\n")
    with open(os.path.join(info, "entry_points.txt"), "w") as f:
        f.write("[bridle.plugins]\ntoy = bridle_toy\n")
    return root


def toy_opts(out_dir: str, **extra) -> list:
    """KEY VALUE overrides for a tiny BRIDLE run on the toy modality."""
    opts = {
        "OUTPUT_DIR": out_dir,
        "MODEL.DEVICE": "cpu",
        "MODEL.PATCH_EMBED.NAME": "toy_signal",
        "MODEL.PATCH_EMBED.IN_CHANS": 1,
        "MODEL.PATCH_EMBED.INPUT_SIZE": "[64]",
        "MODEL.PATCH_EMBED.PATCH_SIZE": "[8]",
        "MODEL.ENCODER.EMBED_DIM": 32,
        "MODEL.ENCODER.DEPTH": 1,
        "MODEL.ENCODER.NUM_HEADS": 2,
        "MODEL.TOKENIZER.EMBED_DIM": 32,
        "MODEL.TOKENIZER.DEPTH": 1,
        "MODEL.TOKENIZER.NUM_HEADS": 2,
        "MODEL.DECODER.EMBED_DIM": 32,
        "MODEL.DECODER.DEPTH": 1,
        "MODEL.DECODER.NUM_HEADS": 2,
        "MODEL.ESTIMATOR.EMBED_DIM": 32,
        "MODEL.ESTIMATOR.DEPTH": 1,
        "MODEL.ESTIMATOR.NUM_HEADS": 2,
        "MODEL.QUANTIZER.NUM_LEVELS": 2,
        "MODEL.QUANTIZER.CODEBOOK_SIZE": 16,
        "MODEL.QUANTIZER.CODE_DIM": 8,
        "MODEL.MASK.RATIO": 0.5,
        "DATASETS.TRAIN": "toy_signals",
        "DATALOADER.NUM_WORKERS": 0,
        "SOLVER.BATCH_SIZE_PER_GPU": 8,
        "SOLVER.MAX_ITER": 6,
        "SOLVER.BASE_LR": 1e-3,
        "SOLVER.CHECKPOINT_PERIOD": 3,
        "LOG_PERIOD": 2,
        "PROGRESS_BAR": False,
    }
    opts.update(extra)
    out = []
    for k, v in opts.items():
        out += [k, str(v)]
    return out
