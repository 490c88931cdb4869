"""BEiT-style blockwise masking ("block") over a 2-D patch grid.

BEiT adds random rectangles one after the other until enough patches are masked. Here the same
idea runs batched on the device without host syncs: every row draws ``num_blocks`` rectangles
(area and aspect as BEiT), a patch scores by the *earliest* block covering it, and the
``num_masked`` best-scoring patches are masked (``mask_from_scores``). So earlier blocks are
taken whole, the last one partially, and if the blocks cover too little the rest is random.
"""

import math
from typing import Sequence

import torch

from bridle.modeling.masking import mask_from_scores, num_masked_tokens
from bridle.registry import MASK_GENERATOR


class BlockMaskGenerator:
    def __init__(self, grid_size: Sequence[int], ratio: float, min_patches: int, min_aspect: float) -> None:
        if len(grid_size) != 2:
            raise ValueError(f"MODEL.MASK.NAME 'block' masks a 2-D patch grid; got grid {list(grid_size)}.")
        if not 0.0 < min_aspect <= 1.0:
            raise ValueError(f"INPUT.IMAGE.BLOCK_MASK.MIN_ASPECT must be in (0, 1]; got {min_aspect}.")
        if min_patches < 1:
            raise ValueError(f"INPUT.IMAGE.BLOCK_MASK.MIN_PATCHES must be >= 1; got {min_patches}.")
        self.grid_size = (int(grid_size[0]), int(grid_size[1]))
        self.num_tokens = self.grid_size[0] * self.grid_size[1]
        self.num_masked = num_masked_tokens(self.num_tokens, ratio)
        self.min_patches = min(int(min_patches), max(self.num_masked, 1))
        self.max_patches = max(self.num_masked, self.min_patches)
        self.log_aspect = (math.log(min_aspect), -math.log(min_aspect))
        # Enough blocks that their union usually exceeds num_masked even with overlaps.
        self.num_blocks = max(1, math.ceil(2 * self.num_masked / self.min_patches))

    def __call__(self, batch_size: int, device=None, generator=None) -> torch.Tensor:
        gh, gw = self.grid_size
        shape = (batch_size, self.num_blocks)
        u = torch.rand((4,) + shape, device=device, generator=generator)
        area = self.min_patches + u[0] * (self.max_patches - self.min_patches)
        aspect = torch.exp(self.log_aspect[0] + u[1] * (self.log_aspect[1] - self.log_aspect[0]))
        h = (area * aspect).sqrt().round().clamp(1, gh)
        w = (area / aspect).sqrt().round().clamp(1, gw)
        top = (u[2] * (gh - h + 1)).floor()
        left = (u[3] * (gw - w + 1)).floor()
        rows = torch.arange(gh, device=device, dtype=h.dtype).view(1, 1, gh, 1)
        cols = torch.arange(gw, device=device, dtype=h.dtype).view(1, 1, 1, gw)
        inside = (
            (rows >= top[..., None, None])
            & (rows < (top + h)[..., None, None])
            & (cols >= left[..., None, None])
            & (cols < (left + w)[..., None, None])
        )  # [B, K, gh, gw]
        priority = torch.arange(self.num_blocks, 0, -1, device=device, dtype=h.dtype).view(1, -1, 1, 1)
        block_score = (inside * priority).amax(dim=1).flatten(1)  # earliest covering block wins
        noise = torch.rand(batch_size, self.num_tokens, device=device, generator=generator)
        return mask_from_scores(block_score + noise, self.num_masked)


@MASK_GENERATOR.register(name="block")
def build_block_mask(cfg, grid_size):
    b = cfg.INPUT.IMAGE.BLOCK_MASK
    return BlockMaskGenerator(grid_size, cfg.MODEL.MASK.RATIO, b.MIN_PATCHES, b.MIN_ASPECT)
