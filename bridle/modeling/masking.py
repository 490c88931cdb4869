"""Mask generators: which patch tokens are hidden from the encoder.

Masks are made on the model's device with torch ops only (no host sync) and keep the
same number of masked tokens per row, so visible tokens gather into a dense tensor.

The contract of a MASK_GENERATOR entry (``fn(cfg, grid_size) -> gen``)::

    gen.num_masked                                   # int, the same for every row
    gen(batch_size, device=None, generator=None)     # -> bool [batch_size, prod(grid_size)]

with ``True`` = masked, exactly ``gen.num_masked`` True per row, tokens in row-major grid
order (the patch embedder's). Helpers for writing one (exported from ``bridle.modeling``):

* :func:`num_masked_tokens` ``(num_tokens, ratio) -> int``: the count to mask (checks ratio).
* :func:`mask_from_scores` ``(scores [B, N], num_masked) -> bool [B, N]``: mask the
  ``num_masked`` highest scores of each row. Any structured mask is "score the tokens, then
  take the top ones": add a little noise to break ties and the count is exact.
* :func:`grid_coords` ``(grid_size, device=None) -> long [N, len(grid_size)]``: the grid
  coordinates of every token, row-major, to score tokens by position (spans, blocks, tubes).
* :class:`RandomMaskGenerator` ``(grid_size, ratio)``: uniform random masking, to wrap or
  subclass.
"""

from typing import Optional, Sequence

import torch

from bridle.registry import MASK_GENERATOR


def num_masked_tokens(num_tokens: int, ratio: float) -> int:
    """``round(num_tokens * ratio)``; raises naming MODEL.MASK.RATIO unless 0 <= ratio < 1."""
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


def grid_coords(grid_size: Sequence[int], device: Optional[torch.device] = None) -> torch.Tensor:
    """long ``[N, len(grid_size)]``: the coordinates of token ``i`` of a row-major grid."""
    axes = [torch.arange(int(g), device=device) for g in grid_size]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(axes))


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
    """The MASK_GENERATOR entry MODEL.MASK.NAME for this grid, its contract checked on a
    2-row mask (shape, dtype, the same .num_masked per row)."""
    name = cfg.MODEL.MASK.NAME
    gen = MASK_GENERATOR.get(name)(cfg, grid_size)
    where = f"MASK_GENERATOR entry '{name}' (MODEL.MASK.NAME, registered by {MASK_GENERATOR.origin(name)})"
    if not hasattr(gen, "num_masked") or not callable(gen):
        raise TypeError(
            f"{where} built {type(gen).__name__}, which lacks "
            + (
                ".num_masked (the count of masked tokens, the same for every sample)."
                if not hasattr(gen, "num_masked")
                else "__call__(batch_size, device=None, generator=None)."
            )
        )
    n = 1
    for g in grid_size:
        n *= int(g)
    with torch.random.fork_rng(devices=[]):  # the check leaves the global RNG stream untouched
        mask = gen(2, device=torch.device("cpu"))
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (2, n):
        got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(
            f"{where}: gen(2) must return a bool tensor of shape (2, {n}) for grid {tuple(grid_size)}; got {got}."
        )
    counts = mask.sum(dim=1).tolist()
    if any(c != int(gen.num_masked) for c in counts):
        raise ValueError(f"{where}: every row must mask exactly .num_masked = {gen.num_masked} tokens; got {counts}.")
    return gen
