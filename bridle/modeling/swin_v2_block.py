"""Swin-v2 style transformer block for window attention over a patch grid of any number of dims.

The authors' local decoder uses these blocks (Swin-v2, arXiv 2111.09883, in the variant of
the MAE-family code they build on); three things differ from a pre-norm ViT block:

* post-norm residuals: ``x + LN(attn(x))`` then ``x + LN(mlp(x))``;
* cosine attention: ``cos(q_i, k_j) * s_h`` with a learned per-head scale ``s_h = exp(l_h)``,
  ``l_h`` clamped to ``<= log(100)`` (a temperature of at least 0.01). ``l_h`` starts at 0
  (temperature 1, as the authors' ``tau``);
* a continuous relative-position bias: a small MLP (in -> hidden -> ReLU -> dropout -> heads)
  over the log-spaced relative coordinates ``sign(d) * log(1 + |d|)`` of every query/key pair
  of a window, one input per grid dim (the authors' MLP, without Swin-v2's normalisation of
  the coordinates to the window size).

Attention runs through ``F.scaled_dot_product_attention`` with one additive float mask: the
position bias plus ``-inf`` where the shifted-window mask separates two tokens. The block is
applied to windows by :class:`~bridle.modeling.window_attention.WindowBlock`, which hands it
the per-window boolean mask ``[num_windows, T, T]`` (attribute ``takes_window_mask``).
"""

import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp

# Temperatures below 0.01 are clamped (the authors' tau.clamp(min=0.01), Swin-v2's max scale 100).
MAX_LOGIT_SCALE = math.log(100.0)


def log_relative_coords(window: Sequence[int]) -> torch.Tensor:
    """[T, T, len(window)]: ``sign(d) * log(1 + |d|)`` of ``d = coord(i) - coord(j)`` for the
    tokens i, j of a window (row-major order, as :func:`window_partition` lays them out)."""
    axes = [torch.arange(int(w), dtype=torch.float32) for w in window]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij")).flatten(1)  # [d, T]
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # [T, T, d]
    return torch.sign(rel) * torch.log1p(rel.abs())


class ContinuousPositionBias(nn.Module):
    """Relative-position bias [heads, T, T] of a window from an MLP over log-spaced coords."""

    def __init__(self, window: Sequence[int], num_heads: int, hidden_dim: int = 384, dropout: float = 0.1) -> None:
        super().__init__()
        self.register_buffer("coords", log_relative_coords(window), persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(len(window), hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, num_heads)
        )

    def forward(self) -> torch.Tensor:
        return self.mlp(self.coords).permute(2, 0, 1)


class CosineWindowAttention(nn.Module):
    """Multi-head cosine attention inside windows of T tokens, with a learned per-head
    temperature and a continuous relative-position bias."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: Sequence[int],
        bias_hidden_dim: int = 384,
        bias_dropout: float = 0.1,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"MODEL.DECODER.EMBED_DIM {dim} is not divisible by NUM_HEADS {num_heads}.")
        self.num_heads = num_heads
        self.window = tuple(int(w) for w in window)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.logit_scale = nn.Parameter(torch.zeros(num_heads))  # log(1 / temperature)
        self.position_bias = ContinuousPositionBias(self.window, num_heads, bias_hidden_dim, bias_dropout)

    def scale(self) -> torch.Tensor:
        """Per-head multiplier of the cosine similarities, [heads]."""
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()

    def additive_mask(self, window_mask: Optional[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        """The SDPA float mask: position bias [H, T, T], plus -inf where ``window_mask``
        ([nW, T, T] bool, True = may attend) forbids -> [nW, H, T, T]."""
        bias = self.position_bias().to(dtype)
        if window_mask is None:
            return bias
        blocked = torch.zeros(window_mask.shape, dtype=dtype, device=bias.device)
        blocked.masked_fill_(~window_mask, float("-inf"))
        return bias[None] + blocked[:, None]

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x [B * nW, T, C] (the windows of B samples, window-major within a sample);
        ``attn_mask`` bool [nW, T, T] or None."""
        bw, t, c = x.shape
        h = self.num_heads
        q, k, v = self.qkv(x).reshape(bw, t, 3, h, c // h).permute(2, 0, 3, 1, 4).unbind(0)  # [BW, H, T, d]
        q = F.normalize(q, dim=-1) * self.scale().to(q.dtype)[:, None, None]
        k = F.normalize(k, dim=-1)
        mask = self.additive_mask(attn_mask, q.dtype)
        if attn_mask is not None:  # [nW, H, T, T] -> one per batch window (4-D inputs take SDPA's fused CPU path)
            nw = attn_mask.shape[0]
            mask = mask[None].expand(bw // nw, -1, -1, -1, -1).reshape(bw, h, t, t)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
        out = out.reshape(bw, h, t, c // h).transpose(1, 2).reshape(bw, t, c)
        return self.proj(out)


class SwinV2Block(nn.Module):
    """Post-norm block: ``x + LN(attn(x))``, then ``x + LN(mlp(x))`` (LayerNorm eps 1e-5 as the
    authors' block); windows and shifts are the caller's (:class:`WindowBlock`)."""

    takes_window_mask = True  # WindowBlock passes the [nW, T, T] mask, not one per batch window

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: Sequence[int],
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        bias_hidden_dim: int = 384,
        bias_dropout: float = 0.1,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.attn = CosineWindowAttention(dim, num_heads, window, bias_hidden_dim, bias_dropout)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x + self.drop_path(self.norm1(self.attn(x, attn_mask)))
        return x + self.drop_path(self.norm2(self.mlp(x)))
