"""Tokenizer T (patches -> discrete codes) and tokenizer-estimator TE (codes -> encoder
features)."""

import math
from typing import Sequence

import torch
import torch.nn as nn

from .patch_embed import build_patch_embed
from .pos_embed import sincos_pos_embed
from .quantizers import build_quantizer, check_quantizer_output
from .vit import build_encoder, init_weights, make_blocks


class Tokenizer(nn.Module):
    """Backbone over all patches (the BACKBONE entry MODEL.TOKENIZER.NAME, cls dropped after
    the blocks) -> Linear-Tanh-Linear to ``code_dim`` -> quantizer."""

    cold_start = False

    def __init__(self, cfg) -> None:
        super().__init__()
        self.vit = build_encoder(cfg, cfg.MODEL.TOKENIZER)
        dim = self.vit.embed_dim
        code_dim = int(cfg.MODEL.QUANTIZER.CODE_DIM)
        self.proj = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, code_dim))
        init_weights(self.proj)
        self.quantizer = build_quantizer(cfg)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation vectors [B, N, code_dim]."""
        return self.proj(self.vit(x)[:, 1:])

    def forward(self, x: torch.Tensor):
        z = self.features(x)
        return check_quantizer_output(self.quantizer(z), z, self.quantizer)


def _default_conv_bias_(module: nn.Module) -> None:
    """Give every conv bias in ``module`` PyTorch's default init, ``U(-1/sqrt(fan_in),
    1/sqrt(fan_in))`` (the core patch embed zeroes it, MAE-style)."""
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd) and m.bias is not None:
            fan_in = m.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(m.bias, -bound, bound)


class ColdStartTokenizer(nn.Module):
    """Iteration-1 tokenizer: frozen random patch embedding + sin-cos position embedding +
    frozen random projection to ``code_dim``, then the quantizer.

    Initialised as the authors' cold start (their ``BRIDLETokenizer.initialize_weights``): the
    patch conv's weight xavier-uniform (as the PATCH_EMBED entry builds it; the core and the
    bundled plugins' patch embeds all do) and its bias PyTorch's default random init (not zero),
    the projection xavier-uniform (std ~0.044 for 768 -> 256, not nn.Linear's default ~0.021).
    The unit-code RQ is scale-dependent, so these scales decide the cold-start codes.
    """

    cold_start = True

    def __init__(self, cfg, embed_dim: int) -> None:
        super().__init__()
        self.patch_embed = build_patch_embed(cfg, embed_dim)
        _default_conv_bias_(self.patch_embed)
        self.pos_embed = nn.Parameter(
            sincos_pos_embed(embed_dim, self.patch_embed.grid_size)[None], requires_grad=False
        )
        self.proj = nn.Linear(embed_dim, int(cfg.MODEL.QUANTIZER.CODE_DIM), bias=False)
        nn.init.xavier_uniform_(self.proj.weight)
        for p in list(self.patch_embed.parameters()) + list(self.proj.parameters()):
            p.requires_grad_(False)
        self.quantizer = build_quantizer(cfg)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.patch_embed(x) + self.pos_embed.to(x.dtype))

    def forward(self, x: torch.Tensor):
        z = self.features(x)
        return check_quantizer_output(self.quantizer(z), z, self.quantizer)


class TokenizerEstimator(nn.Module):
    """Linear(code_dim -> width) + sin-cos position embedding + blocks + LayerNorm + Linear to
    the encoder width: reconstructs the teacher encoder's features from quantised vectors."""

    def __init__(
        self,
        code_dim: int,
        grid_size: Sequence[int],
        out_dim: int,
        embed_dim: int = 768,
        depth: int = 3,
        num_heads: int = 12,
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(code_dim, embed_dim)
        self.pos_embed = nn.Parameter(sincos_pos_embed(embed_dim, grid_size)[None], requires_grad=False)
        self.blocks = make_blocks(embed_dim, depth, num_heads)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, out_dim)
        init_weights(self)

    def forward(self, z_q: torch.Tensor) -> torch.Tensor:
        x = self.embed(z_q) + self.pos_embed.to(z_q.dtype)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x))


def build_tokenizer(cfg, encoder_dim: int) -> nn.Module:
    if cfg.MODEL.TOKENIZER.COLD_START:
        return ColdStartTokenizer(cfg, encoder_dim)
    return Tokenizer(cfg)


def build_estimator(cfg, grid_size, encoder_dim: int) -> TokenizerEstimator:
    e = cfg.MODEL.ESTIMATOR
    return TokenizerEstimator(
        int(cfg.MODEL.QUANTIZER.CODE_DIM), grid_size, encoder_dim, int(e.EMBED_DIM), int(e.DEPTH), int(e.NUM_HEADS)
    )
