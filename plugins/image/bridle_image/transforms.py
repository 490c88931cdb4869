"""Per-item image transforms (PIL RGB -> normalised float [3, H, W]) for each dataset mode, all
built by ``timm.data.create_transform`` so the recipes match MAE's:

- ``pretrain``: RandomResizedCrop(INPUT.IMAGE.PRETRAIN_SCALE, bicubic) + flip.
- ``finetune``: RandomResizedCrop(FINETUNE_SCALE) + flip + RandAugment (AUTO_AUGMENT) + random
  erasing (RE_PROB) -- the only mode with RandAugment / erasing.
- ``linear_probe``: RandomResizedCrop(FINETUNE_SCALE) + flip.
- ``eval``: resize to size / EVAL_CROP_PCT + center crop.

Every mode ends at ``MODEL.PATCH_EMBED.INPUT_SIZE``.
"""

from typing import Callable, Tuple

from PIL import Image
from timm.data import auto_augment as timm_auto_augment
from timm.data import create_transform

from bridle.data.robust import check_mode


def image_input_size(cfg) -> Tuple[int, int]:
    size = cfg.MODEL.PATCH_EMBED.INPUT_SIZE
    if len(size) != 2:
        raise ValueError(f"Image datasets need MODEL.PATCH_EMBED.INPUT_SIZE = [H, W]; got {list(size)}.")
    return int(size[0]), int(size[1])


def _scale(value, key: str) -> Tuple[float, float]:
    if len(value) != 2 or not 0.0 < value[0] <= value[1] <= 1.0:
        raise ValueError(f"{key} must be [min, max] with 0 < min <= max <= 1; got {list(value)}.")
    return float(value[0]), float(value[1])


def _posterize(img: Image.Image, bits_to_keep: int, **kwargs) -> Image.Image:
    """timm's posterize, also for 0 bits (RandAugment "inc1" at magnitude 10), which the
    installed Pillow rejects with a ValueError: keeping no bit gives a black image, as older
    Pillow returned."""
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return timm_auto_augment.posterize(img, bits_to_keep, **kwargs)


def _with_zero_bit_posterize(transform):
    for t in getattr(transform, "transforms", []):
        for op in getattr(t, "ops", []):  # RandAugment / AutoAugment AugmentOps
            if getattr(op, "aug_fn", None) is timm_auto_augment.posterize:
                op.aug_fn = _posterize
    return transform


def build_image_transform(cfg, mode: str) -> Callable:
    """PIL RGB image -> float tensor [3, H, W] for ``mode``."""
    check_mode(mode, "image transform")
    c = cfg.INPUT.IMAGE
    h, w = image_input_size(cfg)
    common = dict(
        input_size=(3, h, w),
        interpolation=c.INTERPOLATION,
        mean=tuple(c.MEAN),
        std=tuple(c.STD),
    )
    if mode == "eval":
        if not 0.0 < c.EVAL_CROP_PCT <= 1.0:
            raise ValueError(f"INPUT.IMAGE.EVAL_CROP_PCT must be in (0, 1]; got {c.EVAL_CROP_PCT}.")
        return create_transform(is_training=False, crop_pct=c.EVAL_CROP_PCT, **common)
    train = dict(is_training=True, hflip=c.HFLIP_PROB, color_jitter=None, **common)
    if mode == "pretrain":
        return create_transform(scale=_scale(c.PRETRAIN_SCALE, "INPUT.IMAGE.PRETRAIN_SCALE"), **train)
    scale = _scale(c.FINETUNE_SCALE, "INPUT.IMAGE.FINETUNE_SCALE")
    if mode == "linear_probe":
        return create_transform(scale=scale, **train)
    finetune = create_transform(
        scale=scale,
        auto_augment=c.AUTO_AUGMENT or None,
        re_prob=c.RE_PROB,
        re_mode=c.RE_MODE,
        re_count=c.RE_COUNT,
        **train,
    )
    return _with_zero_bit_posterize(finetune)
