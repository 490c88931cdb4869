"""Per-clip transforms: decoded frames uint8 [T, H, W, C] -> normalised float [C, T, H, W] of size
``MODEL.PATCH_EMBED.INPUT_SIZE``. Every random choice is drawn once per clip, so all frames of
a clip get the same crop, flip, RandAugment ops and erased box.

- ``pretrain``: VideoMAE multi-scale crop (INPUT.VIDEO.PRETRAIN_SCALES) + flip.
- ``finetune``: RandomResizedCrop + flip + RandAugment (pytorchvideo) + random erasing.
- ``linear_probe``: RandomResizedCrop + flip.
- ``eval``: short side to TEST_SHORT_SIDE_SIZE, then crop ``crop_index`` of ``num_crops``
  spread along the long side (one crop: centered).
Crops and resizes are torchvision ``transforms.v2`` ops on the [T, C, H, W] stack.
"""

from typing import Tuple

import torch
from timm.data.random_erasing import RandomErasing
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

from bridle.data.robust import check_mode

from .compat import pytorchvideo_transforms
from .sampling import crop_offsets, multiscale_crop_box

_BILINEAR = InterpolationMode.BILINEAR


def clip_input_size(cfg) -> Tuple[int, int, int]:
    size = cfg.MODEL.PATCH_EMBED.INPUT_SIZE
    if len(size) != 3:
        raise ValueError(f"Video datasets need MODEL.PATCH_EMBED.INPUT_SIZE = [T, H, W]; got {list(size)}.")
    return int(size[0]), int(size[1]), int(size[2])


def _pair(value, key: str) -> Tuple[float, float]:
    if len(value) != 2 or not 0.0 < value[0] <= value[1]:
        raise ValueError(f"{key} must be [min, max] with 0 < min <= max; got {list(value)}.")
    return float(value[0]), float(value[1])


class ClipTransform:
    def __init__(self, cfg, mode: str) -> None:
        self.mode = check_mode(mode, "video clip transform")
        v = cfg.INPUT.VIDEO
        _, h, w = clip_input_size(cfg)
        self.size = (h, w)
        self.normalize = v2.Normalize(mean=list(v.MEAN), std=list(v.STD))
        self.flip = v2.RandomHorizontalFlip(v.HFLIP_PROB)
        self.scales = [float(s) for s in v.PRETRAIN_SCALES]
        self.max_distort = int(v.PRETRAIN_MAX_DISTORT)
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"INPUT.VIDEO.PRETRAIN_SCALES must be positive fractions; got {self.scales}.")
        self.resized_crop = v2.RandomResizedCrop(
            self.size,
            scale=_pair(v.FINETUNE_SCALE, "INPUT.VIDEO.FINETUNE_SCALE"),
            ratio=_pair(v.FINETUNE_RATIO, "INPUT.VIDEO.FINETUNE_RATIO"),
            interpolation=_BILINEAR,
            antialias=True,
        )
        self.short_side = int(v.TEST_SHORT_SIDE_SIZE)
        if mode == "eval" and self.short_side < min(self.size):
            raise ValueError(
                f"INPUT.VIDEO.TEST_SHORT_SIDE_SIZE ({self.short_side}) must be >= the crop size "
                f"{list(self.size)} (MODEL.PATCH_EMBED.INPUT_SIZE[1:])."
            )
        self.rand_augment = None
        self.erase = None
        if mode == "finetune":
            if v.RAND_AUG_NUM_LAYERS > 0:
                self.rand_augment = pytorchvideo_transforms().RandAugment(
                    magnitude=int(v.RAND_AUG_MAGNITUDE),
                    num_layers=int(v.RAND_AUG_NUM_LAYERS),
                    prob=float(v.RAND_AUG_PROB),
                    sampling_type="gaussian",
                    sampling_hparas={"sampling_std": float(v.RAND_AUG_MSTD)},
                )
            if v.RE_PROB > 0:
                self.erase = RandomErasing(float(v.RE_PROB), mode="pixel", max_count=1, device="cpu")

    def __call__(self, frames: torch.Tensor, crop_index: int = 0, num_crops: int = 1) -> torch.Tensor:
        if frames.dim() != 4 or frames.shape[-1] != 3:
            raise ValueError(f"Clip transform expects frames [T, H, W, 3]; got {list(frames.shape)}.")
        x = frames.permute(0, 3, 1, 2)  # [T, C, H, W]
        if self.mode == "eval":
            x = self._eval_crop(x, crop_index, num_crops)
        elif self.mode == "pretrain":
            h, w = x.shape[-2:]
            top, left, ch, cw = multiscale_crop_box(h, w, self.size, self.scales, self.max_distort)
            x = self.flip(TF.resized_crop(x, top, left, ch, cw, list(self.size), _BILINEAR, antialias=True))
        else:
            x = self.flip(self.resized_crop(x))
        x = x.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
        if self.rand_augment is not None:
            x = self.rand_augment(x).clamp_(0.0, 1.0)
        x = self.normalize(x)
        if self.erase is not None:
            # As one [T*C, H, W] image: one box for the whole clip, fresh noise in every frame.
            self.erase(x.view(-1, *x.shape[-2:]))
        return x.permute(1, 0, 2, 3).contiguous()

    def _eval_crop(self, x: torch.Tensor, crop_index: int, num_crops: int) -> torch.Tensor:
        x = TF.resize(x, [self.short_side], interpolation=_BILINEAR, antialias=True)
        (h, w), (ch, cw) = x.shape[-2:], self.size
        if w >= h:  # landscape: the crops move along the width, centered in height
            top, left = crop_offsets(h, ch, 1)[0], crop_offsets(w, cw, num_crops)[crop_index]
        else:
            top, left = crop_offsets(h, ch, num_crops)[crop_index], crop_offsets(w, cw, 1)[0]
        return TF.crop(x, top, left, ch, cw)
