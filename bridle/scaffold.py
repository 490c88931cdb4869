"""Scaffold of a Bridle modality plugin (run by tools/new_plugin.py): an installable package
``bridle-NAME`` that trains through tools/train_net.py as soon as it is installed.

NAME (a lower-case identifier) names everything: the package ``bridle_NAME``, the entry point
``NAME`` (``BRIDLE_PLUGINS=NAME``), the config nodes ``INPUT.NAME`` / ``DATASETS.NAME`` and the
registry entries ``NAME_conv`` (PATCH_EMBED), ``NAME_span`` (MASK_GENERATOR),
``NAME_manifest`` (DATASET) and ``NAME_noise`` (TRANSFORM). The modality is a multichannel
1-D signal ``[CHANNELS, LENGTH]`` stored one ``.npy`` per item and listed in CSV manifests
(``path,label``); a small synthetic data set is written to ``example_data/`` so the configs
run at once. Replace the pieces you need; docs/DESIGN.md gives every contract.
"""

import argparse
import csv
import keyword
import os
import re
from typing import Optional

import numpy as np

SETUP_PY = """from setuptools import find_packages, setup

setup(
    name="bridle-@name@",
    version="0.1.0",
    description="@Name@ modality plugin for Bridle",
    packages=find_packages(include=["bridle_@name@", "bridle_@name@.*"]),
    package_data={"bridle_@name@": ["configs/*.yaml"]},
    install_requires=["numpy"],  # and bridle itself
    entry_points={"bridle.plugins": ["@name@ = bridle_@name@"]},
)
"""

INIT_PY = '''"""@Name@ modality for Bridle: multichannel 1-D signals [CHANNELS, LENGTH].

Importing the package registers its components; bridle.config.get_cfg() calls
``add_config`` (found in the ``config`` submodule) to declare the keys INPUT.@NAME@.* and
DATASETS.@NAME@.*.
"""
from . import dataset, masking, patch_embed, transforms  # noqa: F401  (register the entries)
'''

CONFIG_PY = '''"""Config keys of the @name@ plugin, each declared once with a comment (the config
reference tool reads these comments)."""
from bridle.config import CfgNode as CN


def add_config(cfg):
    """Called by bridle.config.get_cfg() before any config file is merged."""
    cfg.INPUT.@NAME@ = CN()
    # Channels of a signal (the model input is [CHANNELS, LENGTH]; MODEL.PATCH_EMBED.IN_CHANS must match).
    cfg.INPUT.@NAME@.CHANNELS = @channels@
    # Samples per item: longer signals are cropped (at random in training modes), shorter ones zero-padded.
    cfg.INPUT.@NAME@.LENGTH = @length@
    # Training modes scale each item by a random gain in [1 - GAIN, 1 + GAIN] (0 = off).
    cfg.INPUT.@NAME@.GAIN = 0.2
    # Std of the Gaussian noise that the "@name@_noise" batch transform adds (finetune batches).
    cfg.INPUT.@NAME@.NOISE_STD = 0.05
    # "@name@_span" mask generator: masked spans are this many consecutive patches.
    cfg.INPUT.@NAME@.MASK_SPAN = 2

    cfg.DATASETS.@NAME@ = CN()
    # CSV manifest "path,label" of the "train" split (paths relative to ROOT or the manifest's dir).
    cfg.DATASETS.@NAME@.TRAIN_MANIFEST = ""
    # Manifest of the "val" split ("" = none).
    cfg.DATASETS.@NAME@.VAL_MANIFEST = ""
    # Manifest of the "test" split ("" = none).
    cfg.DATASETS.@NAME@.TEST_MANIFEST = ""
    # Directory relative paths of a manifest resolve against ("" = the manifest's own directory).
    cfg.DATASETS.@NAME@.ROOT = ""
    # Number of classes (labels are 0 .. NUM_CLASSES - 1; keep MODEL.HEAD.NUM_CLASSES equal).
    cfg.DATASETS.@NAME@.NUM_CLASSES = 3
'''

PATCH_EMBED_PY = '''"""PATCH_EMBED "@name@_conv": non-overlapping patches along time (a strided Conv1d).

Contract: fn(cfg, embed_dim) -> nn.Module with .grid_size (tuple) and .num_patches;
forward(x [B, CHANNELS, LENGTH]) -> tokens [B, N, embed_dim] in grid order.
"""
from bridle.modeling import ConvPatchEmbed
from bridle.registry import PATCH_EMBED


@PATCH_EMBED.register(name="@name@_conv")
def build_@name@_patch_embed(cfg, embed_dim):
    p, s = cfg.MODEL.PATCH_EMBED, cfg.INPUT.@NAME@
    if list(p.INPUT_SIZE) != [s.LENGTH] or p.IN_CHANS != s.CHANNELS:
        raise ValueError(
            f"@name@_conv: MODEL.PATCH_EMBED.INPUT_SIZE {list(p.INPUT_SIZE)} / IN_CHANS {p.IN_CHANS} "
            f"must be [INPUT.@NAME@.LENGTH] = [{s.LENGTH}] / INPUT.@NAME@.CHANNELS = {s.CHANNELS}."
        )
    return ConvPatchEmbed(p.INPUT_SIZE, p.PATCH_SIZE, p.IN_CHANS, embed_dim)
'''

MASKING_PY = '''"""MASK_GENERATOR "@name@_span": masks runs of INPUT.@NAME@.MASK_SPAN consecutive patches.

Contract: fn(cfg, grid_size) -> gen with .num_masked; gen(batch_size, device=None,
generator=None) -> bool [B, N] (True = masked) with exactly .num_masked True per row, torch ops
on ``device`` only. The helpers make the count exact: score every token, mask the top ones.
"""
import torch

from bridle.modeling import grid_coords, mask_from_scores, num_masked_tokens
from bridle.registry import MASK_GENERATOR


class SpanMaskGenerator:
    def __init__(self, grid_size, ratio, span):
        self.grid_size = tuple(grid_size)
        self.span = max(1, int(span))
        self.time = grid_coords(self.grid_size)[:, 0]  # time index of every token
        self.num_tokens = int(self.time.numel())
        self.num_masked = num_masked_tokens(self.num_tokens, ratio)

    def __call__(self, batch_size, device=None, generator=None):
        num_spans = (self.grid_size[0] + self.span - 1) // self.span
        span_score = torch.rand(batch_size, num_spans, device=device, generator=generator)
        if self.time.device != torch.device(device or "cpu"):
            self.time = self.time.to(device)  # once per device, not per call
        span_of = (self.time // self.span).expand(batch_size, -1)
        # Tokens of one span share its score; a tiny noise breaks ties inside the last span.
        noise = 1e-3 * torch.rand(batch_size, self.num_tokens, device=device, generator=generator)
        return mask_from_scores(span_score.gather(1, span_of) + noise, self.num_masked)


@MASK_GENERATOR.register(name="@name@_span")
def build_@name@_span_mask(cfg, grid_size):
    return SpanMaskGenerator(grid_size, cfg.MODEL.MASK.RATIO, cfg.INPUT.@NAME@.MASK_SPAN)
'''

DATASET_PY = '''"""DATASET "@name@_manifest": one .npy file ([CHANNELS, T] float) per item, listed in a CSV
manifest with a header "path,label".

Contract: fn(cfg, split, mode) -> torch Dataset with an int __len__. ``split`` is "train",
"val" or "test" (which DATASETS.@NAME@.*_MANIFEST to read); ``mode`` is "pretrain",
"finetune", "linear_probe" (training modes: random crop + gain) or "eval" (deterministic).
Items: {"input": float32 [CHANNELS, LENGTH], "label": int64 scalar, "index": int}; an item
whose file cannot be read is returned as None (the loader skips and counts it).
"""
import csv
import os

import numpy as np
import torch

from bridle.data.robust import RobustItemsMixin, check_mode
from bridle.registry import DATASET

TRAINING_MODES = ("pretrain", "finetune", "linear_probe")


def read_manifest(path, root=""):
    """[(absolute file path, int label)] of a "path,label" CSV; errors name the file and row."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"@name@ manifest '{path}' does not exist (DATASETS.@NAME@.*_MANIFEST).")
    base = root or os.path.dirname(os.path.abspath(path))
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
            raise ValueError(f"@name@ manifest '{path}' must have a header 'path,label'; got {reader.fieldnames}.")
        for line, row in enumerate(reader, start=2):
            try:
                label = int(row["label"])
            except (TypeError, ValueError):
                raise ValueError(f"@name@ manifest '{path}' line {line}: label '{row['label']}' is not an int.") from None
            rows.append((os.path.join(base, row["path"]), label))
    return rows


class @Name@Manifest(RobustItemsMixin, torch.utils.data.Dataset):
    def __init__(self, cfg, split, mode):
        self.mode = check_mode(mode, "DATASET '@name@_manifest'")
        d, s = cfg.DATASETS.@NAME@, cfg.INPUT.@NAME@
        manifest = {"train": d.TRAIN_MANIFEST, "val": d.VAL_MANIFEST, "test": d.TEST_MANIFEST}.get(split)
        if not manifest:
            raise ValueError(f"DATASET '@name@_manifest': no manifest for split '{split}' (set DATASETS.@NAME@.{split.upper()}_MANIFEST).")
        self.items = read_manifest(manifest, d.ROOT)
        self.channels, self.length, self.gain = int(s.CHANNELS), int(s.LENGTH), float(s.GAIN)
        self.num_classes = int(d.NUM_CLASSES)
        bad = [lab for _, lab in self.items if not 0 <= lab < self.num_classes]
        if bad:
            raise ValueError(f"{manifest}: labels {sorted(set(bad))[:5]} outside [0, DATASETS.@NAME@.NUM_CLASSES={self.num_classes}).")

    def __len__(self):
        return len(self.items)

    def _load(self, path):
        x = np.load(path).astype(np.float32)
        if x.ndim != 2 or x.shape[0] != self.channels:
            raise ValueError(f"{path}: expected an array [{self.channels}, T]; got {list(x.shape)}.")
        return torch.from_numpy(x)

    def __getitem__(self, i):
        path, label = self.items[i]
        x = self.load_or_none(path, self._load, path)
        if x is None:
            return None
        train = self.mode in TRAINING_MODES
        t = x.shape[1]
        if t > self.length:  # crop: random offset in training modes, centre at evaluation
            start = int(torch.randint(t - self.length + 1, ())) if train else (t - self.length) // 2
            x = x[:, start:start + self.length]
        elif t < self.length:
            x = torch.nn.functional.pad(x, (0, self.length - t))
        if train and self.gain > 0:
            x = x * (1.0 + self.gain * (2 * torch.rand(()) - 1))
        return {"input": x.contiguous(), "label": torch.tensor(label, dtype=torch.long), "index": i}


@DATASET.register(name="@name@_manifest")
def build_@name@_manifest(cfg, split, mode):
    return @Name@Manifest(cfg, split, mode)
'''

TRANSFORMS_PY = '''"""TRANSFORM "@name@_noise": a batch transform (INPUT.BATCH_TRANSFORMS), applied on the device
to every training batch of the "finetune" trainer (pretraining and linear probing do not apply
batch transforms).

Contract: fn(cfg, mode) -> callable(batch dict) -> batch dict.
"""
import torch

from bridle.registry import TRANSFORM


@TRANSFORM.register(name="@name@_noise")
def build_@name@_noise(cfg, mode):
    std = float(cfg.INPUT.@NAME@.NOISE_STD)

    def add_noise(batch):
        if std > 0:
            x = batch["input"]
            batch["input"] = x + std * torch.randn_like(x)
        return batch

    return add_noise
'''

PRETRAIN_YAML = """# Tiny BRIDLE schedule of the @name@ plugin (CPU in seconds): width 64, depth 2, RQ 2 x 32 codes.
# For real data: point DATASETS.@NAME@.*_MANIFEST at your manifests and use paper-size models
# (MODEL.ENCODER.SIZE "base", see bridle's configs/*/pretrain_rq.yaml).
TRAINER:
  NAME: "schedule"
MODEL:
  PATCH_EMBED:
    NAME: "@name@_conv"
    IN_CHANS: @channels@
    INPUT_SIZE: [@length@]
    PATCH_SIZE: [16]
  MASK:
    NAME: "@name@_span"
    RATIO: 0.6
  ENCODER: {SIZE: "", EMBED_DIM: 64, DEPTH: 2, NUM_HEADS: 2}
  TOKENIZER: {SIZE: "", EMBED_DIM: 64, DEPTH: 2, NUM_HEADS: 2}
  DECODER: {EMBED_DIM: 64, DEPTH: 2, NUM_HEADS: 2}
  ESTIMATOR: {EMBED_DIM: 64, DEPTH: 1, NUM_HEADS: 2}
  QUANTIZER: {NUM_LEVELS: 2, CODEBOOK_SIZE: 32, CODE_DIM: 16, KMEANS_ITERS: 5}
DATASETS:
  TRAIN: "@name@_manifest"
  @NAME@:
    TRAIN_MANIFEST: "@data@/train.csv"
    VAL_MANIFEST: "@data@/val.csv"
    TEST_MANIFEST: "@data@/test.csv"
    NUM_CLASSES: 3
PRETRAIN:
  SCHEDULE: ["encoder_cold", "tokenizer", "encoder"]
SOLVER:
  MAX_ITER: 10
  BASE_LR: 1.0e-3
  BATCH_SIZE_PER_GPU: 8
  CHECKPOINT_PERIOD: 5
DATALOADER:
  NUM_WORKERS: 0
LOG_PERIOD: 5
PROGRESS_BAR: False
OUTPUT_DIR: "output/@name@_tiny"
"""

FINETUNE_YAML = """# Fine-tune an exported @name@ encoder (MODEL.WEIGHTS) on the labelled manifests; the model
# keys must match the pretraining config's. Model selection on val, test reported.
_BASE_: pretrain_tiny.yaml
TRAINER:
  NAME: "finetune"
MODEL:
  HEAD:
    NUM_CLASSES: 3
DATASETS:
  TRAIN: "@name@_manifest"
  VAL: "@name@_manifest"
  TEST: "@name@_manifest"
INPUT:
  BATCH_TRANSFORMS: ["@name@_noise"]
SOLVER:
  MAX_ITER: 10
  BASE_LR: 1.0e-3
  LAYER_DECAY: 0.75
TEST:
  EVAL_PERIOD: 5
  EVALUATORS: ["accuracy"]
OUTPUT_DIR: "output/@name@_tiny_finetune"
"""

TEST_PY = '''"""Tests of the @name@ plugin: run with ``pytest tests`` once the package is installed."""
import os

import numpy as np
import pytest
import torch

from bridle.config import get_cfg
from bridle.registry import DATASET, MASK_GENERATOR, PATCH_EMBED, TRANSFORM

HERE = os.path.dirname(os.path.abspath(__file__))


def tiny_cfg(tmp_path=None):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(HERE, "..", "configs", "pretrain_tiny.yaml"))
    return cfg


def test_entries_are_registered_by_this_package():
    get_cfg()  # loads the installed plugins (this one among them) and calls their add_config
    for reg, name in ((PATCH_EMBED, "@name@_conv"), (MASK_GENERATOR, "@name@_span"),
                      (DATASET, "@name@_manifest"), (TRANSFORM, "@name@_noise")):
        assert reg.origin(name) == "bridle_@name@", (reg, name)


def test_items_follow_the_dataset_contract():
    cfg = tiny_cfg()
    for mode in ("pretrain", "finetune", "linear_probe", "eval"):
        ds = DATASET.get("@name@_manifest")(cfg, "train", mode)
        assert isinstance(len(ds), int) and len(ds) > 0
        item = ds[0]
        assert item["input"].dtype == torch.float32
        assert list(item["input"].shape) == [cfg.INPUT.@NAME@.CHANNELS, cfg.INPUT.@NAME@.LENGTH]
        assert item["label"].dtype == torch.long and item["label"].dim() == 0


def test_unreadable_item_is_none(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\\nmissing.npy,0\\n")
    cfg = tiny_cfg()
    cfg.DATASETS.@NAME@.TRAIN_MANIFEST = str(tmp_path / "m.csv")
    assert DATASET.get("@name@_manifest")(cfg, "train", "eval")[0] is None


def test_span_mask_masks_exactly_num_masked_in_spans():
    cfg = tiny_cfg()
    grid = (cfg.INPUT.@NAME@.LENGTH // cfg.MODEL.PATCH_EMBED.PATCH_SIZE[0],)
    gen = MASK_GENERATOR.get("@name@_span")(cfg, grid)
    mask = gen(16, generator=torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and mask.shape == (16, grid[0])
    assert (mask.sum(1) == gen.num_masked).all()


def test_patch_embed_shapes():
    cfg = tiny_cfg()
    embed = PATCH_EMBED.get("@name@_conv")(cfg, 32)
    x = torch.randn(2, cfg.INPUT.@NAME@.CHANNELS, cfg.INPUT.@NAME@.LENGTH)
    assert embed(x).shape == (2, embed.num_patches, 32)


def test_noise_transform_changes_only_the_input():
    cfg = tiny_cfg()
    batch = {"input": torch.zeros(4, 3, 8), "label": torch.arange(4)}
    out = TRANSFORM.get("@name@_noise")(cfg, "finetune")(batch)
    assert out["input"].std() > 0 and torch.equal(out["label"], torch.arange(4))
'''

README_MD = """# bridle-@name@

A Bridle modality plugin generated by `tools/new_plugin.py @name@`: multichannel 1-D signals
`[CHANNELS, LENGTH]`, one `.npy` per item, listed in CSV manifests `path,label`.

| file | registers | contract (docs/DESIGN.md) |
|---|---|---|
| `bridle_@name@/config.py` | `add_config(cfg)`: `INPUT.@NAME@.*`, `DATASETS.@NAME@.*` | keys declared once, with a comment |
| `bridle_@name@/patch_embed.py` | PATCH_EMBED `@name@_conv` | `fn(cfg, embed_dim)` -> module with `.grid_size`, `.num_patches` |
| `bridle_@name@/masking.py` | MASK_GENERATOR `@name@_span` | `fn(cfg, grid_size)` -> gen with `.num_masked` |
| `bridle_@name@/dataset.py` | DATASET `@name@_manifest` | `fn(cfg, split, mode)` -> Dataset of dicts |
| `bridle_@name@/transforms.py` | TRANSFORM `@name@_noise` | `fn(cfg, mode)` -> batch dict -> batch dict |
| `configs/*.yaml` | tiny pretraining schedule and fine-tuning | |
| `example_data/` | 48 synthetic items (3 classes), train/val/test manifests | |

```bash
pip install -e .
python <bridle>/tools/train_net.py --config-file configs/pretrain_tiny.yaml
python <bridle>/tools/export_encoder.py output/@name@_tiny/2_encoder/model_final.pth encoder.pth
python <bridle>/tools/train_net.py --config-file configs/finetune_tiny.yaml MODEL.WEIGHTS encoder.pth
pytest tests
```
"""

TEMPLATES = {
    "setup.py": SETUP_PY,
    "README.md": README_MD,
    "bridle_@name@/__init__.py": INIT_PY,
    "bridle_@name@/config.py": CONFIG_PY,
    "bridle_@name@/patch_embed.py": PATCH_EMBED_PY,
    "bridle_@name@/masking.py": MASKING_PY,
    "bridle_@name@/dataset.py": DATASET_PY,
    "bridle_@name@/transforms.py": TRANSFORMS_PY,
    "configs/pretrain_tiny.yaml": PRETRAIN_YAML,
    "configs/finetune_tiny.yaml": FINETUNE_YAML,
    "tests/test_@name@.py": TEST_PY,
}


def write_example_data(data_dir: str, channels: int, length: int, per_class: int = 16, seed: int = 0) -> None:
    """3 classes of noisy multichannel sinusoids (class = frequency), a little longer than
    ``length`` so that training crops vary; manifests train (60%) / val (20%) / test (20%)."""
    rng = np.random.default_rng(seed)
    os.makedirs(data_dir, exist_ok=True)
    rows = []
    t = np.arange(length + length // 4)
    for label in range(3):
        for k in range(per_class):
            phase = rng.uniform(0, 2 * np.pi, size=(channels, 1))
            x = np.sin(2 * np.pi * (label + 1) * 4 * t / length + phase) + 0.1 * rng.standard_normal((channels, t.size))
            name = f"item_{label}_{k:03d}.npy"
            np.save(os.path.join(data_dir, name), x.astype(np.float32))
            rows.append((name, label, k))
    for split, keep in (("train", lambda k: k % 5 < 3), ("val", lambda k: k % 5 == 3), ("test", lambda k: k % 5 == 4)):
        with open(os.path.join(data_dir, f"{split}.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label"])
            w.writerows((name, label) for name, label, k in rows if keep(k))


def render(text: str, name: str, channels: int, length: int, data_dir: str) -> str:
    subs = {
        "@name@": name,
        "@Name@": name.capitalize(),
        "@NAME@": name.upper(),
        "@channels@": str(channels),
        "@length@": str(length),
        "@data@": data_dir.replace(os.sep, "/"),
    }
    for k, v in subs.items():
        text = text.replace(k, v)
    return text


def scaffold(name: str, directory: str = ".", channels: int = 3, length: int = 256, force: bool = False) -> str:
    """Write the package to ``directory/bridle-NAME`` and return that path."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise SystemExit(f"new_plugin: NAME must be a lower-case identifier (e.g. 'imu'); got '{name}'.")
    if length % 16:
        raise SystemExit(f"new_plugin: --length must be a multiple of the patch size 16; got {length}.")
    root = os.path.abspath(os.path.join(directory, f"bridle-{name}"))
    if os.path.exists(root) and not force:
        raise SystemExit(f"new_plugin: {root} already exists (use --force to overwrite).")
    data_dir = os.path.join(root, "example_data")
    for rel, text in TEMPLATES.items():
        path = os.path.join(root, rel.replace("@name@", name))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(render(text, name, channels, length, data_dir))
    write_example_data(data_dir, channels, length)
    return root


def main(argv=None, usage: Optional[str] = None) -> str:
    """tools/new_plugin.py: write the package and print the next steps; returns its path.
    ``usage``: the tool's examples, shown before this module's description in --help."""
    p = argparse.ArgumentParser(
        description=(usage + "\n" if usage else "") + __doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help="modality name, a lower-case identifier (package bridle_NAME)")
    p.add_argument("--dir", default=".", help="where to create bridle-NAME/ (default: the current directory)")
    p.add_argument("--channels", type=int, default=3, help="channels of a signal (default 3)")
    p.add_argument("--length", type=int, default=256, help="samples per item, a multiple of 16 (default 256)")
    p.add_argument("--force", action="store_true", help="overwrite an existing package directory")
    args = p.parse_args(argv)
    root = scaffold(args.name, args.dir, args.channels, args.length, args.force)
    print(
        f"Wrote {root}\nNext:\n  pip install -e {root}\n"
        f"  python tools/train_net.py --list | grep bridle_{args.name}\n"
        f"  python tools/train_net.py --config-file {root}/configs/pretrain_tiny.yaml"
    )
    return root
