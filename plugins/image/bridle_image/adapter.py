"""INPUT_ADAPTER "image" (bridle.interop.adapters): raw RGB images -> model input, for exported
models and ``bridle.load_tokenizer``. Images of any size keep their size (no resize, no crop):
the model's position table follows their patch grid."""

from typing import Optional, Tuple

import torch

from bridle.interop.adapters import INPUT_ADAPTER


class ImageAdapter:
    modality = "image"
    raw_ndim = 3  # [3, H, W]
    time_axis: Optional[int] = None

    def __init__(self, cfg) -> None:
        i = cfg.INPUT.IMAGE
        self.mean = torch.tensor([float(m) for m in i.MEAN])
        self.std = torch.tensor([float(s) for s in i.STD])
        self.input_size = [int(s) for s in cfg.MODEL.PATCH_EMBED.INPUT_SIZE]
        self.pad_value = 0.0  # the normalised mean colour

    def __call__(self, raw: torch.Tensor) -> Tuple[torch.Tensor, None]:
        if raw.dim() != 4 or raw.shape[1] != 3:
            raise ValueError(f"image input: expected RGB [3, H, W] (or a batch [B, 3, H, W]); got {list(raw.shape)}.")
        x = raw.float() / 255.0 if not raw.is_floating_point() else raw.float()
        mean, std = self.mean.to(x.device)[:, None, None], self.std.to(x.device)[:, None, None]
        return (x - mean) / std, None

    def describe(self) -> dict:
        return {
            "modality": self.modality,
            "raw": "RGB image [3, H, W], float in [0, 1] (uint8 is divided by 255)",
            "preprocessing": f"normalised with mean {[round(m, 4) for m in self.mean.tolist()]} and std "
            f"{[round(v, 4) for v in self.std.tolist()]} "
            "(INPUT.IMAGE.MEAN / STD)",
            "trained_size": f"{self.input_size} (H, W); the datasets' eval transform resizes the short side to "
            "size / INPUT.IMAGE.EVAL_CROP_PCT and center-crops",
            "other_sizes": "padded (normalised 0) to a multiple of the patch size; the sin-cos position "
            "table is recomputed for the new patch grid (bridle.load_tokenizer)",
        }

    def timm_in_chans(self) -> int:
        return 3

    def card_usage(self, folder: str) -> str:
        return ""


@INPUT_ADAPTER.register(name="image")
def build_image_adapter(cfg) -> ImageAdapter:
    return ImageAdapter(cfg)
