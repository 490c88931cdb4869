"""ViT encoder built from timm blocks (fused SDPA attention), over any patch grid.

Parameter names follow timm's VisionTransformer (cls_token, pos_embed, patch_embed.proj,
blocks.N, norm), so an exported encoder state dict loads into timm for 2-D grids.
"""

from functools import partial
from typing import Optional, Tuple

import torch
import torch.nn as nn
from timm.models.vision_transformer import Block
from torch.utils.checkpoint import checkpoint

from bridle.protocols import Backbone, PatchCount, missing_members, supports
from bridle.registry import BACKBONE

from .patch_embed import build_patch_embed
from .pos_embed import sincos_pos_embed

# name -> (embed_dim, depth, num_heads)
VIT_SIZES = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "huge": (1280, 32, 16),
}


def vit_dims(node) -> Tuple[int, int, int]:
    """(embed_dim, depth, num_heads) from a config node with SIZE and optional overrides."""
    size = str(node.SIZE).lower()
    if size and size not in VIT_SIZES:
        raise ValueError(f"Unknown ViT SIZE '{node.SIZE}'; expected one of {sorted(VIT_SIZES)}.")
    base = VIT_SIZES.get(size, (0, 0, 0))
    dims = tuple(int(o) if int(o) > 0 else b for o, b in zip((node.EMBED_DIM, node.DEPTH, node.NUM_HEADS), base))
    if min(dims) <= 0:
        raise ValueError(f"ViT dims incomplete: set SIZE or EMBED_DIM/DEPTH/NUM_HEADS (got {dims}).")
    if dims[0] % dims[2] != 0:
        raise ValueError(f"ViT EMBED_DIM {dims[0]} is not divisible by NUM_HEADS {dims[2]}.")
    return dims


def make_blocks(dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0):
    dpr = [drop_path * i / max(1, depth - 1) for i in range(depth)] if depth > 1 else [drop_path] * depth
    norm = partial(nn.LayerNorm, eps=1e-6)
    return nn.ModuleList(
        Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=dpr[i], norm_layer=norm)
        for i in range(depth)
    )


def init_weights(module: nn.Module) -> None:
    """MAE/BEiT init: xavier-uniform Linear weights, zero biases, unit LayerNorm."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """x [B, N, C], ids [B, M] -> [B, M, C]."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def visible_ids(mask: torch.Tensor, num_masked: int) -> torch.Tensor:
    """Indices [B, N - num_masked] of the unmasked tokens (sorted, no host sync)."""
    n = mask.shape[1]
    order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)
    return order[:, : n - num_masked]


class VisionTransformer(nn.Module):
    def __init__(
        self,
        patch_embed: nn.Module,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        grad_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.patch_embed = patch_embed
        self.grid_size = tuple(patch_embed.grid_size)
        self.num_patches = int(patch_embed.num_patches)
        self.embed_dim = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.grad_checkpoint = grad_checkpoint
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # Fixed sin-cos table, saved in the state dict (timm layout) but never trained.
        self.pos_embed = nn.Parameter(
            sincos_pos_embed(embed_dim, self.grid_size, cls_token=True)[None], requires_grad=False
        )
        self.blocks = make_blocks(embed_dim, depth, num_heads, mlp_ratio, drop_path)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        init_weights(self.blocks)
        init_weights(self.norm)
        nn.init.normal_(self.cls_token, std=0.02)

    @classmethod
    def from_config(cls, cfg, node=None) -> "VisionTransformer":
        node = node if node is not None else cfg.MODEL.ENCODER
        dim, depth, heads = vit_dims(node)
        return cls(
            build_patch_embed(cfg, dim),
            dim,
            depth,
            heads,
            mlp_ratio=float(getattr(node, "MLP_RATIO", 4.0)),
            drop_path=float(getattr(node, "DROP_PATH", 0.0)),
            grad_checkpoint=bool(getattr(node, "GRAD_CHECKPOINT", False)),
        )

    def layer_id(self, name: str) -> int:
        """Layer index for layer-wise lr decay: embeddings 0, block i -> i + 1, the rest depth + 1."""
        if name.startswith(("cls_token", "pos_embed", "patch_embed")):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.depth + 1

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens plus position embedding, without cls: [B, N, D]."""
        return self.patch_embed(x) + self.pos_embed[:, 1:].to(x.dtype if x.is_floating_point() else torch.float32)

    def forward(
        self,
        x: torch.Tensor,
        ids_keep: Optional[torch.Tensor] = None,
        final_norm: bool = True,
        num_blocks: Optional[int] = None,
    ) -> torch.Tensor:
        """Tokens [B, 1 + M, D] after the final norm (cls first). With ``ids_keep`` [B, M] only
        those patches go through the blocks (MAE-style); otherwise all N patches.
        ``final_norm=False`` returns the last block's output (what MAE-style global pooling reads).
        ``num_blocks=k`` stops after block k and returns its raw output (no final norm)."""
        if num_blocks is not None and not 1 <= num_blocks <= self.depth:
            raise ValueError(f"num_blocks must be in 1..{self.depth} (the encoder's depth); got {num_blocks}.")
        tokens = self.embed(x)
        if ids_keep is not None:
            tokens = gather_tokens(tokens, ids_keep)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls.to(tokens.dtype), tokens], dim=1)
        for i, blk in enumerate(self.blocks):
            if num_blocks is not None and i == num_blocks:
                return tokens
            if self.grad_checkpoint and self.training:
                tokens = checkpoint(blk, tokens, use_reentrant=False)
            else:
                tokens = blk(tokens)
        if num_blocks is not None:
            return tokens
        return self.norm(tokens) if final_norm else tokens


@BACKBONE.register(name="vit")
def build_vit(cfg, node=None) -> VisionTransformer:
    return VisionTransformer.from_config(cfg, node)


#: What every BACKBONE module must have (bridle.protocols.Backbone, checked by :func:`check_backbone`).
BACKBONE_ATTRIBUTES = ("grid_size", "embed_dim", "depth")
_LAYER_ID = "layer_id(param_name) -> int (0 = embeddings, i + 1 = block i, depth + 1 = the rest)"


def check_backbone(model, name: str = "?", key: str = "MODEL.ENCODER.NAME"):
    """Raise naming the BACKBONE entry, its plugin and what it lacks unless ``model`` meets
    :class:`bridle.protocols.Backbone`: an ``nn.Module`` with ``.grid_size`` (tuple),
    ``.embed_dim``, ``.depth`` (ints), ``layer_id(param_name) -> int`` and
    ``forward(x, ids_keep=None)``; the optional ``.num_patches`` (:class:`bridle.protocols.PatchCount`)
    must be prod(grid_size)."""
    where = BACKBONE.label(name, key)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"{where} returned {type(model).__name__}; a backbone builder fn(cfg, node) must return an nn.Module."
        )
    lacks = [_LAYER_ID if m == "layer_id" else m for m in missing_members(model, Backbone)]
    if lacks:
        raise TypeError(
            f"{where} built {type(model).__name__}, which lacks {lacks}, required by bridle.protocols.Backbone "
            "(docs/DESIGN.md, Contracts); subclassing bridle.modeling.VisionTransformer provides them all."
        )
    n = 1
    for g in tuple(model.grid_size):
        n *= int(g)
    if supports(model, PatchCount) and int(model.num_patches) != n:
        raise ValueError(
            f"{where}: .num_patches {model.num_patches} != prod(.grid_size {tuple(model.grid_size)}) = {n}."
        )
    if int(model.depth) <= 0 or int(model.embed_dim) <= 0:
        raise ValueError(f"{where}: .depth ({model.depth}) and .embed_dim ({model.embed_dim}) must be > 0.")
    return model


def build_encoder(cfg, node=None) -> nn.Module:
    """The BACKBONE entry ``node.NAME`` (node: cfg.MODEL.ENCODER by default, or
    cfg.MODEL.TOKENIZER), built as ``fn(cfg, node)`` and checked by :func:`check_backbone`."""
    node = node if node is not None else cfg.MODEL.ENCODER
    name = getattr(node, "NAME", "vit")
    key = "MODEL.TOKENIZER.NAME" if node is getattr(cfg.MODEL, "TOKENIZER", None) else "MODEL.ENCODER.NAME"
    return check_backbone(BACKBONE.get(name)(cfg, node), name, key)
