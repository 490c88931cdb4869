"""Local-window (Swin-style) self-attention over a patch grid of any number of dims.

Tokens are arranged on the grid, optionally rolled by ``shift``, cut into windows and each
window goes through a block (SDPA attention): a plain timm Block — per-token norms and MLPs
are the same inside or outside windows, so a Block on windows is a Swin block — or a
:class:`~bridle.modeling.swin_v2_block.SwinV2Block`. Shifted windows get the Swin mask so
tokens that wrapped around the grid edge do not attend to each other. A block with
``takes_window_mask = True`` receives that mask once, ``[num_windows, T, T]``; any other one
gets it repeated per batch window, ``[B * num_windows, 1, T, T]`` (timm's ``attn_mask``).
"""

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn


def _check(grid: Sequence[int], window: Sequence[int], shift: Sequence[int]) -> None:
    if not (len(grid) == len(window) == len(shift)):
        raise ValueError(
            f"MODEL.DECODER.WINDOW_SIZE {list(window)} and SHIFT_SIZE {list(shift)} need one entry "
            f"per patch-grid dim (grid {list(grid)})."
        )
    for g, w, s in zip(grid, window, shift):
        if w <= 0 or g % w != 0:
            raise ValueError(f"MODEL.DECODER.WINDOW_SIZE {list(window)} must divide the patch grid {list(grid)}.")
        if not 0 <= s < w:
            raise ValueError(f"MODEL.DECODER.SHIFT_SIZE {list(shift)} must be in [0, window) per dim.")


def window_partition(x: torch.Tensor, grid: Tuple[int, ...], window: Tuple[int, ...]) -> torch.Tensor:
    """[B, N, C] (row-major over ``grid``) -> [B * num_windows, prod(window), C]."""
    b, _, c = x.shape
    d = len(grid)
    shape = [b]
    for g, w in zip(grid, window):
        shape += [g // w, w]
    x = x.reshape(*shape, c)
    outer = [1 + 2 * i for i in range(d)]
    inner = [2 + 2 * i for i in range(d)]
    x = x.permute(0, *outer, *inner, 1 + 2 * d)
    return x.reshape(-1, math.prod(window), c)


def window_reverse(x: torch.Tensor, grid: Tuple[int, ...], window: Tuple[int, ...], batch: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: -> [B, N, C]."""
    d = len(grid)
    c = x.shape[-1]
    counts = [g // w for g, w in zip(grid, window)]
    x = x.reshape(batch, *counts, *window, c)
    perm = [0]
    for i in range(d):
        perm += [1 + i, 1 + d + i]
    x = x.permute(*perm, 1 + 2 * d)
    return x.reshape(batch, -1, c)


def shifted_window_mask(
    grid: Tuple[int, ...], window: Tuple[int, ...], shift: Tuple[int, ...]
) -> Optional[torch.Tensor]:
    """bool [num_windows, T, T], True where attention is allowed; None when nothing is shifted."""
    if not any(shift):
        return None
    region = torch.zeros(grid, dtype=torch.long)
    for dim, (g, w, s) in enumerate(zip(grid, window, shift)):
        if s == 0:
            continue
        ids = torch.zeros(g, dtype=torch.long)
        ids[g - w : g - s] = 1
        ids[g - s :] = 2
        view = [1] * len(grid)
        view[dim] = g
        region = region * 3 + ids.view(view)
    win = window_partition(region.reshape(1, -1, 1), grid, window).squeeze(-1)  # [nW, T]
    return win[:, :, None] == win[:, None, :]


class WindowBlock(nn.Module):
    """A block applied inside (optionally shifted) local windows of the patch grid."""

    def __init__(self, block: nn.Module, grid, window, shift) -> None:
        super().__init__()
        grid, window, shift = tuple(grid), tuple(window), tuple(shift)
        _check(grid, window, shift)
        self.block = block
        self.grid, self.window, self.shift = grid, window, shift
        mask = shifted_window_mask(grid, window, shift)
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        dims = tuple(range(1, len(self.grid) + 1))
        if any(self.shift):
            x = torch.roll(x.reshape(b, *self.grid, -1), [-s for s in self.shift], dims).reshape(b, -1, x.shape[-1])
        w = window_partition(x, self.grid, self.window)
        mask = self.attn_mask
        if mask is not None and not getattr(self.block, "takes_window_mask", False):
            nw = self.attn_mask.shape[0]
            mask = self.attn_mask.unsqueeze(0).expand(b, -1, -1, -1).reshape(b * nw, 1, *self.attn_mask.shape[1:])
        w = self.block(w, attn_mask=mask)
        x = window_reverse(w, self.grid, self.window, b)
        if any(self.shift):
            x = torch.roll(x.reshape(b, *self.grid, -1), list(self.shift), dims).reshape(b, -1, x.shape[-1])
        return x
