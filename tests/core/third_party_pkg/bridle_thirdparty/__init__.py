"""A third-party package (copied to a temp dir and installed by the tests) that extends
Bridle's registries from outside: QUANTIZER "fsq" (finite scalar quantization, no codebook),
BACKBONE "ls_vit" (a ViT variant with layer-scale, used for the encoder and the tokenizer)
and HEAD "mlp". It declares no config keys: everything comes from the core's MODEL.* keys."""

from functools import partial

import torch
import torch.nn as nn
from timm.models.vision_transformer import Block

from bridle.modeling import VisionTransformer, vit_dims
from bridle.modeling.patch_embed import build_patch_embed
from bridle.modeling.quantizers import QuantizerOutput
from bridle.registry import BACKBONE, HEAD, QUANTIZER


@QUANTIZER.register(name="fsq")
class FiniteScalarQuantizer(nn.Module):
    """FSQ (Mentzer et al. 2023): each of the CODE_DIM dims is bounded by tanh and rounded to
    one of L levels; the code id is the mixed-radix number of the D level indices, so
    CODEBOOK_SIZE must be L ** CODE_DIM. One code per token (num_levels = 1). No codebook, so
    no init_codebook / is_initialized / codebook_state_keys: its learned input scale is
    ordinary state, handed over between phases like any other layer."""

    def __init__(self, code_dim: int, levels: int) -> None:
        super().__init__()
        self.code_dim, self.levels = int(code_dim), int(levels)
        self.num_levels = 1
        self.codebook_size = self.levels**self.code_dim
        self.scale = nn.Parameter(torch.ones(self.code_dim))  # learned per-dim input scale
        self.register_buffer("basis", self.levels ** torch.arange(self.code_dim), persistent=False)

    @classmethod
    def from_config(cls, qcfg) -> "FiniteScalarQuantizer":
        d, k = int(qcfg.CODE_DIM), int(qcfg.CODEBOOK_SIZE)
        levels = round(k ** (1.0 / d))
        if levels < 2 or levels**d != k or int(qcfg.NUM_LEVELS) != 1:
            raise ValueError(
                f"fsq: MODEL.QUANTIZER.CODEBOOK_SIZE ({k}) must be L ** CODE_DIM ({d}) for an integer "
                f"L >= 2, and NUM_LEVELS must be 1 (got {qcfg.NUM_LEVELS})."
            )
        return cls(d, levels)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        half = (self.levels - 1) / 2
        bounded = torch.tanh(z.float() * self.scale) * half  # in (-half, half)
        rounded = bounded + (torch.round(bounded) - bounded).detach()  # straight-through
        idx = (torch.round(bounded) + half).long().clamp_(0, self.levels - 1)  # [..., D]
        codes = (idx * self.basis).sum(-1, keepdim=True)  # [..., 1]
        used = torch.zeros(self.codebook_size, device=z.device).index_fill_(0, codes.flatten(), 1.0)
        return QuantizerOutput(
            quantized=(rounded / half).to(z.dtype),
            codes=codes,
            loss=z.new_zeros((), dtype=torch.float32),
            metrics={"fsq_usage": used.mean()},
        )


class LayerScaleViT(VisionTransformer):
    """The core ViT with timm layer-scale blocks (keys blocks.N.ls1.gamma / ls2.gamma: still
    timm's layout, so export and fine-tuning keep them)."""

    def __init__(self, patch_embed, embed_dim, depth, num_heads, init_values: float = 0.1) -> None:
        super().__init__(patch_embed, embed_dim, depth, num_heads)
        self.blocks = nn.ModuleList(
            Block(
                embed_dim, num_heads, qkv_bias=True, init_values=init_values, norm_layer=partial(nn.LayerNorm, eps=1e-6)
            )
            for _ in range(depth)
        )


@BACKBONE.register(name="ls_vit")
def build_ls_vit(cfg, node):
    dim, depth, heads = vit_dims(node)
    return LayerScaleViT(build_patch_embed(cfg, dim), dim, depth, heads)


@HEAD.register(name="mlp")
def build_mlp_head(cfg, in_dim, num_classes):
    hidden = max(16, in_dim // 2)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, num_classes))
