"""Tube masking ("tube", VideoMAE): one random spatial mask shared by every time step.

Works on any patch grid whose first axis is time: ``round(prod(grid[1:]) * ratio)`` spatial
positions are masked at all ``grid[0]`` time steps, so ``num_masked = grid[0] * that``.
"""

import math
from typing import Sequence

import torch

from bridle.modeling.masking import mask_from_scores, num_masked_tokens
from bridle.registry import MASK_GENERATOR


class TubeMaskGenerator:
    def __init__(self, grid_size: Sequence[int], ratio: float) -> None:
        if len(grid_size) < 2:
            raise ValueError(f"MODEL.MASK.NAME 'tube' needs a patch grid [time, *space]; got {list(grid_size)}.")
        self.grid_size = tuple(int(g) for g in grid_size)
        self.num_steps = self.grid_size[0]
        self.num_positions = math.prod(self.grid_size[1:])
        self.num_masked_positions = num_masked_tokens(self.num_positions, ratio)
        self.num_tokens = self.num_steps * self.num_positions
        self.num_masked = self.num_steps * self.num_masked_positions

    def __call__(self, batch_size: int, device=None, generator=None) -> torch.Tensor:
        scores = torch.rand(batch_size, self.num_positions, device=device, generator=generator)
        spatial = mask_from_scores(scores, self.num_masked_positions)  # [B, positions]
        # Row-major grid order: token = t * positions + p, so repeating along time is an expand.
        return spatial.unsqueeze(1).expand(-1, self.num_steps, -1).reshape(batch_size, self.num_tokens)


@MASK_GENERATOR.register(name="tube")
def build_tube_mask(cfg, grid_size):
    return TubeMaskGenerator(grid_size, cfg.MODEL.MASK.RATIO)
