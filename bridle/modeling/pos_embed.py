"""Fixed sin-cos positional embeddings over a patch grid of any number of dims, and resizing
a stored positional-embedding table to another patch grid.

Fine-tuning at another input size than pretraining changes the patch grid, so the stored
``pos_embed`` table must be resized. :func:`interpolate_pos_embed` first checks whether the
stored table *is* the fixed sin-cos table of the old grid (the encoder's positional embedding is
never trained); if so it recomputes the sin-cos table of the new grid exactly (patch at grid
index i keeps the embedding of index i, so a patch keeps the meaning it had during pretraining).
Any other (learned) table is resampled over the grid: linear for 1-D, bicubic for 2-D,
trilinear for 3-D grids (``align_corners=False``). The cls row is kept as is.
"""

import logging
import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from bridle.protocols import StateDict

__all__ = ["sincos_pos_embed", "resize_pos_embed", "interpolate_pos_embed"]

logger = logging.getLogger(__name__)


def _sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = pos.reshape(-1).double()[:, None] * omega[None, :]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_pos_embed(embed_dim: int, grid_size: Sequence[int], cls_token: bool = False) -> torch.Tensor:
    """[N (+1), embed_dim] float32. The width is split evenly between grid dims (the last
    dim gets any remainder, padded with zeros); for 2-D grids this equals MAE's embedding."""
    grid_size = tuple(int(g) for g in grid_size)
    nd = len(grid_size)
    # Each axis gets an even share of the channels.
    per_axis = (embed_dim // nd) // 2 * 2
    coords = torch.meshgrid(*[torch.arange(g, dtype=torch.float64) for g in grid_size], indexing="ij")
    # MAE's 2-D convention: the first half of the channels encodes the *last* axis (w).
    parts = [_sincos_1d(per_axis, c) for c in reversed(coords)]
    emb = torch.cat(parts, dim=1)
    if emb.shape[1] < embed_dim:
        emb = torch.cat([emb, torch.zeros(emb.shape[0], embed_dim - emb.shape[1], dtype=emb.dtype)], 1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, embed_dim, dtype=emb.dtype), emb], dim=0)
    return emb.float()


_INTERP_MODES = {1: "linear", 2: "bicubic", 3: "trilinear"}


def _infer_grid(n_old: int, new_grid: Tuple[int, ...]) -> Tuple[int, ...]:
    """The old grid of a table with ``n_old`` patch rows: the new grid scaled uniformly (same
    aspect) if that fits, else the only grid that differs from the new one along one axis."""
    ratio = (n_old / max(1, math.prod(new_grid))) ** (1.0 / len(new_grid))
    uniform = tuple(int(round(g * ratio)) for g in new_grid)
    exact = all(abs(g * ratio - u) < 1e-6 for g, u in zip(new_grid, uniform))
    if exact and math.prod(uniform) == n_old:
        return uniform
    cands = set()
    for i in range(len(new_grid)):
        other = math.prod(g for j, g in enumerate(new_grid) if j != i)
        if other > 0 and n_old % other == 0:
            g = list(new_grid)
            g[i] = n_old // other
            cands.add(tuple(g))
    if len(cands) != 1:
        raise ValueError(
            f"Cannot tell the patch grid of a pos_embed table with {n_old} patches (candidates "
            f"{sorted(cands) or 'none'} for the new grid {list(new_grid)}): pass old_grid_size, or use an "
            "exported encoder (its meta.grid_size) or a checkpoint with its stored config."
        )
    return cands.pop()


def resize_pos_embed(
    pos_embed: torch.Tensor,
    new_grid_size: Sequence[int],
    old_grid_size: Optional[Sequence[int]] = None,
    num_extra_tokens: int = 1,
) -> Tuple[torch.Tensor, str]:
    """Resize a ``[1, extra + N_old, D]`` (or ``[extra + N_old, D]``) table to the new grid.
    Returns (table, method) with method "unchanged", "sincos" (exact recomputation) or the
    interpolation mode used."""
    new_grid = tuple(int(g) for g in new_grid_size)
    if not 1 <= len(new_grid) <= 3:
        raise ValueError(f"pos_embed resizing supports 1-D to 3-D patch grids; got {list(new_grid)}.")
    if pos_embed.dim() not in (2, 3):
        raise ValueError(f"pos_embed must be [1, T, D] or [T, D]; got {list(pos_embed.shape)}.")
    squeeze = pos_embed.dim() == 2
    pe = pos_embed[None] if squeeze else pos_embed
    dim = pe.shape[-1]
    n_old = pe.shape[1] - num_extra_tokens
    old_grid = tuple(int(g) for g in old_grid_size) if old_grid_size is not None else None
    if old_grid is None:
        old_grid = new_grid if n_old == math.prod(new_grid) else _infer_grid(n_old, new_grid)
    if math.prod(old_grid) != n_old:
        raise ValueError(
            f"pos_embed has {n_old} patch rows but the stated pretraining grid {list(old_grid)} has "
            f"{math.prod(old_grid)} patches."
        )
    if len(old_grid) != len(new_grid):
        raise ValueError(f"Cannot resize pos_embed from a {len(old_grid)}-D grid {list(old_grid)} to {list(new_grid)}.")
    if old_grid == new_grid:
        return pos_embed, "unchanged"
    extra, patch = pe[:, :num_extra_tokens], pe[:, num_extra_tokens:]
    table = sincos_pos_embed(dim, old_grid)
    if torch.allclose(patch[0].float().cpu(), table, atol=1e-5, rtol=0.0):
        new_patch = sincos_pos_embed(dim, new_grid).to(patch.device)[None]
        method = "sincos"
    else:
        method = _INTERP_MODES[len(new_grid)]
        x = patch.float().reshape(1, *old_grid, dim).movedim(-1, 1)
        x = F.interpolate(x, size=new_grid, mode=method, align_corners=False)
        new_patch = x.movedim(1, -1).reshape(1, math.prod(new_grid), dim)
    out = torch.cat([extra, new_patch.to(pe.dtype)], dim=1)
    return (out[0] if squeeze else out), method


def interpolate_pos_embed(
    state: StateDict,
    new_grid_size: Sequence[int],
    old_grid_size: Optional[Sequence[int]] = None,
    num_extra_tokens: int = 1,
    key: str = "pos_embed",
) -> StateDict:
    """A copy of ``state`` whose ``pos_embed`` covers ``new_grid_size`` (cls row kept): exact
    sin-cos recomputation when the table is the fixed sin-cos one, else linear / bicubic /
    trilinear resampling over the 1-/2-/3-D grid. ``old_grid_size`` is inferred when the
    patch count allows only one grid."""
    if key not in state:
        raise KeyError(f"State dict has no '{key}' to resize; keys like {sorted(state)[:6]}.")
    table, method = resize_pos_embed(state[key], new_grid_size, old_grid_size, num_extra_tokens)
    out = dict(state)
    out[key] = table
    if method != "unchanged":
        logger.info(
            f"Resized {key} {list(state[key].shape)} -> {list(table.shape)} for patch grid "
            f"{list(new_grid_size)} "
            f"({'exact sin-cos recomputation' if method == 'sincos' else method + ' interpolation'})."
        )
    return out
