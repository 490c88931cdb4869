from .masking import RandomMaskGenerator, build_mask_generator
from .patch_embed import ConvPatchEmbed, build_patch_embed
from .pos_embed import sincos_pos_embed

__all__ = [
    "ConvPatchEmbed",
    "RandomMaskGenerator",
    "build_mask_generator",
    "build_patch_embed",
    "sincos_pos_embed",
]
from .vit import VisionTransformer, build_encoder, vit_dims  # noqa: E402
from . import quantizers  # noqa: E402,F401  (registers QUANTIZER "vq" and "rq")
