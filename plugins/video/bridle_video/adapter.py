"""INPUT_ADAPTER "tubelet" (bridle.interop.adapters): decoded frames -> model input clips, for
exported models and ``bridle.load_tokenizer`` (clips of any length are cut along time)."""

from typing import Optional, Tuple

import torch

from bridle.interop.adapters import INPUT_ADAPTER

from .transforms import ClipTransform


class VideoAdapter:
    modality = "video"
    raw_ndim = 4  # [T, H, W, 3]
    time_axis: Optional[int] = 0  # INPUT_SIZE = [T, H, W]

    def __init__(self, cfg) -> None:
        self.transform = ClipTransform(cfg, "eval")
        self.rate = max(1, int(cfg.INPUT.VIDEO.SAMPLING_RATE))
        self.input_size = [int(s) for s in cfg.MODEL.PATCH_EMBED.INPUT_SIZE]
        self.short_side = int(cfg.INPUT.VIDEO.TEST_SHORT_SIDE_SIZE)
        self.pad_value = 0.0  # the normalised mean colour

    def __call__(self, raw: torch.Tensor) -> Tuple[torch.Tensor, None]:
        if raw.dim() != 5 or raw.shape[-1] != 3:
            raise ValueError(
                f"video input: expected decoded frames uint8 [T, H, W, 3] (or a batch [B, T, H, W, 3]); "
                f"got {list(raw.shape)}."
            )
        clips = [self.transform(frames[:: self.rate].to(torch.uint8)) for frames in raw.cpu()]
        return torch.stack(clips).to(raw.device), None  # [B, C, T', h, w]

    def describe(self) -> dict:
        return {
            "modality": self.modality,
            "raw": "decoded frames uint8 [T, H, W, 3] at the source frame rate",
            "preprocessing": f"every {self.rate}-th frame (INPUT.VIDEO.SAMPLING_RATE); short side resized to "
            f"{self.short_side}, center crop {self.input_size[1:]}, /255, normalised with INPUT.VIDEO.MEAN / STD",
            "window": f"{self.input_size[0]} sampled frames; longer clips are cut into windows along time",
        }

    def timm_in_chans(self) -> None:
        return None  # 3-D tubelets: timm's VisionTransformer has no equivalent

    def card_usage(self, folder: str) -> str:
        return ""


@INPUT_ADAPTER.register(name="tubelet")
def build_video_adapter(cfg) -> VideoAdapter:
    return VideoAdapter(cfg)
