import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from timm.data.auto_augment import RandAugment
from timm.data.random_erasing import RandomErasing
from torchvision.transforms import InterpolationMode

from bridle.data import skip_none_collate
from bridle.registry import DATASET

MODES = ["pretrain", "finetune", "linear_probe", "eval"]


# ---------------------------------------------------------------------------- digits
def test_digits_items_labels_and_num_classes(image_cfg):
    ds = DATASET.get("digits")(image_cfg, "train", "eval")
    item = ds[0]
    assert item["input"].shape == (3, 32, 32) and item["input"].dtype == torch.float32
    assert item["label"].dtype == torch.long and item["label"].dim() == 0
    assert ds.num_classes == 10
    assert sorted(set(ds.labels.tolist())) == list(range(10))
    # Normalised with the ImageNet stats: the black background maps to (0 - mean) / std.
    background = (0 - torch.tensor(image_cfg.INPUT.IMAGE.MEAN)) / torch.tensor(image_cfg.INPUT.IMAGE.STD)
    assert torch.allclose(item["input"][:, 0, 0], background, atol=1e-4)


def test_digits_splits_are_deterministic_disjoint_and_complete(image_cfg):
    build = DATASET.get("digits")
    splits = {s: build(image_cfg, s, "eval") for s in ("train", "val", "test")}
    idx = {s: set(d.indices.tolist()) for s, d in splits.items()}
    assert not (idx["train"] & idx["val"] or idx["train"] & idx["test"] or idx["val"] & idx["test"])
    assert len(idx["train"] | idx["val"] | idx["test"]) == 1797
    assert len(idx["test"]) == round(1797 * 0.2) and len(idx["val"]) == round(1797 * 0.1)
    again = build(image_cfg, "val", "eval")
    assert torch.equal(again.labels, splits["val"].labels)
    assert torch.equal(again[5]["input"], splits["val"][5]["input"])  # eval items are deterministic
    image_cfg.DATASETS.IMAGE.DIGITS_SEED = 1
    reseeded = build(image_cfg, "val", "eval")
    assert set(reseeded.indices.tolist()) != idx["val"]


def test_digits_upsamples_to_model_input_size(image_cfg):
    image_cfg.MODEL.PATCH_EMBED.INPUT_SIZE = [224, 224]
    image_cfg.MODEL.PATCH_EMBED.PATCH_SIZE = [16, 16]
    ds = DATASET.get("digits")(image_cfg, "test", "pretrain")
    assert ds[0]["input"].shape == (3, 224, 224)


def test_digits_unknown_split_names_the_choices(image_cfg):
    with pytest.raises(ValueError, match="split must be one of"):
        DATASET.get("digits")(image_cfg, "holdout", "eval")


# ---------------------------------------------------------------------------- image_folder
@pytest.fixture
def image_root(tmp_path):
    """ImageFolder tree of real photos (scikit-image) with two corrupt files in train/."""
    photos = {"cat": [skdata.chelsea(), skdata.cat()], "coffee": [skdata.coffee(), skdata.rocket()]}
    for split in ("train", "val"):
        for cls, imgs in photos.items():
            os.makedirs(tmp_path / split / cls)
            for k, arr in enumerate(imgs):
                Image.fromarray(arr[::4, ::4]).save(tmp_path / split / cls / f"{k}.jpg", quality=90)
    (tmp_path / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    good = (tmp_path / "train" / "coffee" / "0.jpg").read_bytes()
    (tmp_path / "train" / "coffee" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    return tmp_path


def test_image_folder_skips_and_counts_unreadable_files(image_cfg, image_root, caplog):
    image_cfg.DATASETS.IMAGE.ROOT = str(image_root)
    ds = DATASET.get("image_folder")(image_cfg, "train", "finetune")
    assert ds.classes == ["cat", "coffee"] and ds.num_classes == 2 and len(ds) == 6
    with caplog.at_level(logging.WARNING, logger="bridle.data.robust"):
        items = [ds[i] for i in range(len(ds))]
    bad = {os.path.basename(p) for p, _ in (ds.samples[i] for i, it in enumerate(items) if it is None)}
    assert bad == {"broken.jpg", "truncated.jpg"}
    assert ds.num_failed == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "broken.jpg" in warnings[0].getMessage()
    good = [it for it in items if it is not None]
    assert all(it["input"].shape == (3, 32, 32) for it in good)
    assert [int(it["label"]) for it in good] == [0, 0, 1, 1]
    batch = skip_none_collate(items)
    assert batch["input"].shape == (4, 3, 32, 32) and int(batch["num_skipped"]) == 2


def test_image_folder_test_split_reads_val_dir(image_cfg, image_root):
    image_cfg.DATASETS.IMAGE.ROOT = str(image_root)
    ds = DATASET.get("image_folder")(image_cfg, "test", "eval")
    assert len(ds) == 4 and all(os.sep + "val" + os.sep in p for p, _ in ds.samples)
    image_cfg.DATASETS.IMAGE.TEST_SPLIT_DIR = "missing"
    with pytest.raises(FileNotFoundError, match="DATASETS.IMAGE.TEST_SPLIT_DIR"):
        DATASET.get("image_folder")(image_cfg, "test", "eval")


def test_image_folder_needs_root(image_cfg):
    with pytest.raises(ValueError, match="DATASETS.IMAGE.ROOT"):
        DATASET.get("image_folder")(image_cfg, "train", "pretrain")


# ---------------------------------------------------------------------------- transforms per mode
def _ops(dataset):
    return list(dataset.transform.transforms)


def test_transforms_per_mode(image_cfg):
    ds = {m: DATASET.get("digits")(image_cfg, "val", m) for m in MODES}
    kinds = {m: {type(op).__name__ for op in _ops(d)} for m, d in ds.items()}
    # RandAugment and random erasing only when fine-tuning.
    for m in MODES:
        has_ft_aug = any(isinstance(op, (RandAugment, RandomErasing)) for op in _ops(ds[m]))
        assert has_ft_aug == (m == "finetune"), m
    crop = {m: next(op for op in _ops(ds[m]) if "RandomResizedCrop" in type(op).__name__) for m in MODES if m != "eval"}
    assert crop["pretrain"].scale == (0.2, 1.0) and crop["finetune"].scale == (0.08, 1.0)
    interp = crop["pretrain"].interpolation
    assert interp in ("bicubic", InterpolationMode.BICUBIC) or getattr(interp, "value", None) == "bicubic"
    assert "RandomHorizontalFlip" in kinds["pretrain"] and "RandomHorizontalFlip" not in kinds["eval"]
    assert {"Resize", "CenterCrop"} <= kinds["eval"]
    # eval is deterministic, the training modes are not.
    assert torch.equal(ds["eval"][3]["input"], ds["eval"][3]["input"])
    assert not torch.equal(ds["finetune"][3]["input"], ds["finetune"][3]["input"])


def test_randaugment_posterize_at_full_magnitude_gives_black_not_an_error(image_cfg):
    ds = DATASET.get("digits")(image_cfg, "val", "finetune")
    rand_augment = next(op for op in _ops(ds) if isinstance(op, RandAugment))
    posterize = next(op for op in rand_augment.ops if op.name == "PosterizeIncreasing")
    posterize.prob, posterize.magnitude, posterize.magnitude_std = 1.0, 10, 0.0  # keeps 0 bits
    photo = Image.fromarray(skdata.chelsea())
    out = posterize(photo)
    assert out.size == photo.size and np.asarray(out).max() == 0


def test_unknown_mode_is_rejected(image_cfg):
    with pytest.raises(ValueError, match="mode must be one of"):
        DATASET.get("digits")(image_cfg, "train", "training")
