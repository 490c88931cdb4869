"""Decoder D: visible encoder tokens + mask tokens on the full grid -> code logits of the
masked patches only (the head never runs on visible tokens).

Its blocks are an entry of the DECODER_BLOCK registry (MODEL.DECODER.BLOCK): "prenorm", a
timm ViT block (global, or inside local windows), or "swin_v2", the authors' local-decoder
block (post-norm, cosine attention with a learned temperature, continuous relative-position
bias; :mod:`bridle.modeling.swin_v2_block`), which always works on windows (with global
attention: one window covering the whole grid).
"""

from typing import Sequence

import torch
import torch.nn as nn

from bridle.registry import Registry

from .pos_embed import sincos_pos_embed
from .swin_v2_block import SwinV2Block
from .vit import gather_tokens, init_weights, make_blocks
from .window_attention import WindowBlock

DECODER_BLOCK = Registry(
    "DECODER_BLOCK",
    "fn(dim, depth, num_heads, window: tuple or None) -> list of depth blocks, each "
    "forward(x [B', T, dim], attn_mask=None); window is the local window (None: global attention).",
)


@DECODER_BLOCK.register(name="prenorm")
def prenorm_blocks(dim: int, depth: int, num_heads: int, window=None):
    """Pre-norm timm ViT blocks (MAE's decoder block)."""
    return list(make_blocks(dim, depth, num_heads))


@DECODER_BLOCK.register(name="swin_v2")
def swin_v2_blocks(dim: int, depth: int, num_heads: int, window=None):
    """The authors' Swin-v2 blocks; ``window`` None is filled in by the decoder (the whole grid)."""
    return [SwinV2Block(dim, num_heads, window) for _ in range(depth)]


class MaskedTokenDecoder(nn.Module):
    def __init__(
        self,
        encoder_dim: int,
        grid_size: Sequence[int],
        num_outputs: int,
        embed_dim: int = 512,
        depth: int = 16,
        num_heads: int = 16,
        attention: str = "global",
        window_size: Sequence[int] = (4, 4),
        shift_size: Sequence[int] = (2, 0),
        block: str = "prenorm",
    ) -> None:
        super().__init__()
        if attention not in ("global", "window"):
            raise ValueError(f"MODEL.DECODER.ATTENTION must be 'global' or 'window'; got '{attention}'.")
        self.grid_size = tuple(grid_size)
        self.embed = nn.Linear(encoder_dim, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(sincos_pos_embed(embed_dim, self.grid_size)[None], requires_grad=False)
        no_shift = (0,) * len(self.grid_size)
        windowed = attention == "window" or block == "swin_v2"
        window = tuple(window_size) if attention == "window" else self.grid_size
        if attention == "window" and len(window) != len(self.grid_size):
            raise ValueError(
                f"MODEL.DECODER.WINDOW_SIZE {list(window)} needs one entry per patch-grid dim "
                f"(grid {list(self.grid_size)})."
            )
        blocks = DECODER_BLOCK.get(block)(embed_dim, depth, num_heads, window if windowed else None)
        if windowed:
            shift = tuple(shift_size) if attention == "window" else no_shift
            blocks = [
                WindowBlock(b, self.grid_size, window, shift if i % 2 else no_shift) for i, b in enumerate(blocks)
            ]
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_outputs)
        init_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, ids_keep: torch.Tensor, ids_masked: torch.Tensor) -> torch.Tensor:
        """latent [B, 1 + V, E] (encoder output, cls first) -> logits [B, M, num_outputs] for
        the patches ``ids_masked`` [B, M], in that order."""
        x = self.embed(latent[:, 1:])
        b, _, c = x.shape
        n = ids_keep.shape[1] + ids_masked.shape[1]
        full = self.mask_token.to(x.dtype).expand(b, n, c).clone()
        full.scatter_(1, ids_keep.unsqueeze(-1).expand(-1, -1, c), x)
        full = full + self.pos_embed.to(full.dtype)
        for blk in self.blocks:
            full = blk(full)
        out = gather_tokens(full, ids_masked)
        return self.head(self.norm(out))
