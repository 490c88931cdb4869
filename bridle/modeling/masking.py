"""Mask generators: which patch tokens are hidden from the encoder.

Masks are made on the model's device with torch ops only (no host sync) and keep the
same number of masked tokens per row, so visible tokens gather into a dense tensor.
"""
from typing import Sequence

import torch

from bridle.registry import MASK_GENERATOR


def num_masked_tokens(num_tokens: int, ratio: float) -> int:
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"MODEL.MASK.RATIO must be in [0, 1); got {ratio}.")
    return int(round(num_tokens * ratio))


def mask_from_scores(scores: torch.Tensor, num_masked: int) -> torch.Tensor:
    """bool [B, N]: the ``num_masked`` highest-scoring tokens of each row are masked."""
    idx = scores.topk(num_masked, dim=1).indices if num_masked > 0 else None
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if idx is not None:
        mask.scatter_(1, idx, True)
    return mask


class RandomMaskGenerator:
    """Uniformly random masking of ``ratio`` of the tokens (BEATs/MAE)."""

    def __init__(self, grid_size: Sequence[int], ratio: float) -> None:
        self.grid_size = tuple(grid_size)
        self.num_tokens = 1
        for g in self.grid_size:
            self.num_tokens *= g
        self.num_masked = num_masked_tokens(self.num_tokens, ratio)

    def __call__(self, batch_size: int, device=None, generator=None) -> torch.Tensor:
        scores = torch.rand(batch_size, self.num_tokens, device=device, generator=generator)
        return mask_from_scores(scores, self.num_masked)


@MASK_GENERATOR.register(name="random")
def build_random_mask(cfg, grid_size):
    return RandomMaskGenerator(grid_size, cfg.MODEL.MASK.RATIO)


def build_mask_generator(cfg, grid_size):
    gen = MASK_GENERATOR.get(cfg.MODEL.MASK.NAME)(cfg, grid_size)
    if not hasattr(gen, "num_masked"):
        raise TypeError(
            f"MASK_GENERATOR entry '{cfg.MODEL.MASK.NAME}' must expose .num_masked "
            "(the same count of masked tokens for every sample)."
        )
    return gen
