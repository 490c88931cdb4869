"""Decoder D: visible encoder tokens + mask tokens on the full grid -> code logits of the
masked patches only (the head never runs on visible tokens)."""
from typing import Sequence

import torch
import torch.nn as nn

from .pos_embed import sincos_pos_embed
from .vit import gather_tokens, init_weights, make_blocks
from .window_attention import WindowBlock


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
    ) -> None:
        super().__init__()
        if attention not in ("global", "window"):
            raise ValueError(f"MODEL.DECODER.ATTENTION must be 'global' or 'window'; got '{attention}'.")
        self.grid_size = tuple(grid_size)
        self.embed = nn.Linear(encoder_dim, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(sincos_pos_embed(embed_dim, self.grid_size)[None], requires_grad=False)
        blocks = make_blocks(embed_dim, depth, num_heads)
        if attention == "window":
            no_shift = (0,) * len(self.grid_size)
            blocks = nn.ModuleList(
                WindowBlock(b, self.grid_size, window_size, shift_size if i % 2 else no_shift)
                for i, b in enumerate(blocks)
            )
        self.blocks = blocks
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
