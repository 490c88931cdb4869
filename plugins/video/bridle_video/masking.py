"""Tube masking ("tube", VideoMAE): one random spatial mask shared by every time step.

Works on any patch grid whose first axis is time: ``round(prod(grid[1:]) * ratio)`` spatial
positions are masked at all ``grid[0]`` time steps, so ``num_masked = grid[0] * that``.

"tube_random": tubes over ``INPUT.VIDEO.MASK_TUBE_RATIO`` of the spatial positions, and uniformly
random tokens among the others up to ``MODEL.MASK.RATIO`` of all tokens. A tube can only be
predicted from what is around it in space (shape); a lone masked token also from the same place
in the neighbouring frames (where the content moved). Random masking alone asks for the second,
tube masking alone for the first.
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


class TubeRandomMaskGenerator:
    def __init__(self, grid_size: Sequence[int], ratio: float, tube_ratio: float) -> None:
        if len(grid_size) < 2:
            raise ValueError(f"MODEL.MASK.NAME 'tube_random' needs a patch grid [time, *space]; got {list(grid_size)}.")
        self.grid_size = tuple(int(g) for g in grid_size)
        self.num_steps = self.grid_size[0]
        self.num_positions = math.prod(self.grid_size[1:])
        self.num_tokens = self.num_steps * self.num_positions
        self.num_masked = num_masked_tokens(self.num_tokens, ratio)
        self.num_tube_positions = num_masked_tokens(self.num_positions, tube_ratio)
        if self.num_tube_positions * self.num_steps > self.num_masked:
            raise ValueError(
                f"INPUT.VIDEO.MASK_TUBE_RATIO {tube_ratio}: its tubes ({self.num_tube_positions} positions x "
                f"{self.num_steps} steps) hide more than MODEL.MASK.RATIO {ratio} of the {self.num_tokens} tokens "
                f"({self.num_masked}); expected MASK_TUBE_RATIO <= MODEL.MASK.RATIO."
            )

    def __call__(self, batch_size: int, device=None, generator=None) -> torch.Tensor:
        spatial = torch.rand(batch_size, self.num_positions, device=device, generator=generator)
        tubes = mask_from_scores(spatial, self.num_tube_positions)  # [B, positions]
        tubes = tubes.unsqueeze(1).expand(-1, self.num_steps, -1).reshape(batch_size, self.num_tokens)
        # tube tokens score above every other (scores < 1): the top-k takes them all, then random ones
        scores = torch.rand(batch_size, self.num_tokens, device=device, generator=generator) + tubes.float()
        return mask_from_scores(scores, self.num_masked)


@MASK_GENERATOR.register(name="tube_random")
def build_tube_random_mask(cfg, grid_size):
    return TubeRandomMaskGenerator(grid_size, cfg.MODEL.MASK.RATIO, cfg.INPUT.VIDEO.MASK_TUBE_RATIO)
