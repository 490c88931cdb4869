"""Generic N-D patch embedding (a strided Conv1d/2d/3d), used by every modality plugin."""

from typing import Sequence, Tuple

import torch
import torch.nn as nn

from bridle.registry import PATCH_EMBED

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class ConvPatchEmbed(nn.Module):
    """Non-overlapping patches of an input ``[B, C, *input_size]`` (or ``[B, *input_size]``
    when ``in_chans == 1``) -> tokens ``[B, N, embed_dim]`` in row-major grid order."""

    def __init__(
        self,
        input_size: Sequence[int],
        patch_size: Sequence[int],
        in_chans: int,
        embed_dim: int,
    ) -> None:
        super().__init__()
        input_size, patch_size = tuple(int(s) for s in input_size), tuple(int(p) for p in patch_size)
        if len(input_size) != len(patch_size) or len(input_size) not in _CONV:
            raise ValueError(
                f"MODEL.PATCH_EMBED: INPUT_SIZE {list(input_size)} and PATCH_SIZE "
                f"{list(patch_size)} must have the same length, 1 to 3."
            )
        bad = [(s, p) for s, p in zip(input_size, patch_size) if p <= 0 or s % p != 0]
        if bad:
            raise ValueError(
                f"MODEL.PATCH_EMBED: every INPUT_SIZE entry must be a multiple of PATCH_SIZE; "
                f"got INPUT_SIZE {list(input_size)}, PATCH_SIZE {list(patch_size)}."
            )
        self.input_size = input_size
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.grid_size: Tuple[int, ...] = tuple(s // p for s, p in zip(input_size, patch_size))
        self.num_patches = 1
        for g in self.grid_size:
            self.num_patches *= g
        self.proj = _CONV[len(input_size)](in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        # MAE: initialise the projection like a Linear layer.
        w = self.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nd = len(self.input_size)
        if x.dim() == nd + 1 and self.in_chans == 1:
            x = x.unsqueeze(1)
        if x.dim() != nd + 2 or tuple(x.shape[2:]) != self.input_size or x.shape[1] != self.in_chans:
            raise ValueError(
                f"Patch embedding expects input [B, {self.in_chans}, "
                f"{', '.join(map(str, self.input_size))}] (MODEL.PATCH_EMBED.IN_CHANS / INPUT_SIZE); "
                f"got {list(x.shape)}."
            )
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2)


@PATCH_EMBED.register(name="conv")
def build_conv_patch_embed(cfg, embed_dim: int) -> ConvPatchEmbed:
    p = cfg.MODEL.PATCH_EMBED
    return ConvPatchEmbed(p.INPUT_SIZE, p.PATCH_SIZE, p.IN_CHANS, embed_dim)


def build_patch_embed(cfg, embed_dim: int) -> nn.Module:
    name = cfg.MODEL.PATCH_EMBED.NAME
    embed = PATCH_EMBED.get(name)(cfg, embed_dim)
    where = f"PATCH_EMBED entry '{name}' (MODEL.PATCH_EMBED.NAME, registered by {PATCH_EMBED.origin(name)})"
    lacks = [a for a in ("grid_size", "num_patches") if not hasattr(embed, a)]
    if not isinstance(embed, nn.Module) or lacks:
        raise TypeError(
            f"{where} returned {type(embed).__name__}"
            + (f", which lacks {lacks}" if lacks else ", not an nn.Module")
            + "; fn(cfg, embed_dim) must return an nn.Module with .grid_size (tuple) and .num_patches (docs/DESIGN.md)."
        )
    n = 1
    for g in tuple(embed.grid_size):
        n *= int(g)
    if n != int(embed.num_patches):
        raise ValueError(
            f"{where}: .num_patches {embed.num_patches} != prod(.grid_size {tuple(embed.grid_size)}) = {n}."
        )
    return embed
