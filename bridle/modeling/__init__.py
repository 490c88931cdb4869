"""Model components of the core, and the helpers a plugin builds its own from.

Exported for plugins: ``ConvPatchEmbed`` (PATCH_EMBED), the mask helpers
``num_masked_tokens``, ``mask_from_scores``, ``grid_coords``, ``RandomMaskGenerator``
(MASK_GENERATOR), ``VisionTransformer`` / ``check_backbone`` (BACKBONE), ``sincos_pos_embed``;
see docs/DESIGN.md for every contract.
"""

from .masking import RandomMaskGenerator, build_mask_generator, grid_coords, mask_from_scores, num_masked_tokens
from .patch_embed import ConvPatchEmbed, build_patch_embed
from .pos_embed import sincos_pos_embed

__all__ = [
    "ConvPatchEmbed",
    "EncoderClassifier",
    "RandomMaskGenerator",
    "VisionTransformer",
    "build_encoder",
    "build_mask_generator",
    "build_patch_embed",
    "check_backbone",
    "grid_coords",
    "mask_from_scores",
    "num_masked_tokens",
    "sincos_pos_embed",
    "vit_dims",
]
from . import quantizers  # noqa: E402,F401  (registers QUANTIZER "vq" and "rq")
from .classifier import EncoderClassifier  # noqa: E402  (registers HEAD "linear", META_ARCH "EncoderClassifier")
from .vit import VisionTransformer, build_encoder, check_backbone, vit_dims  # noqa: E402
