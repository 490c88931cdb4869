"""Fixed sin-cos positional embeddings over a patch grid of any number of dims."""
from typing import Sequence

import torch


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
