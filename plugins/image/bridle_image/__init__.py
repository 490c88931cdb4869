"""Bridle image plugin (entry point ``image = bridle_image``).

Importing it registers:
- PATCH_EMBED "image" (RGB [3, H, W] -> 16 x 16 patches; 224 -> 14 x 14),
- MASK_GENERATOR "block" (BEiT-style blockwise; the core "random" is the paper's default),
- TRANSFORM "mixup_cutmix" (timm Mixup/CutMix on fine-tuning batches),
- DATASET "image_folder" (ImageFolder layout) and "digits" (scikit-learn digits, offline),
- SAMPLE_DECODER "image" (image bytes + JSON label of a "shards" dataset).
``add_config`` declares ``INPUT.IMAGE.*`` and ``DATASETS.IMAGE.*``.
"""

from . import adapter, digits_dataset, folder_dataset, masking, mixup, patch_embed, shards  # noqa: F401  (registration)
from .config import add_config
from .transforms import build_image_transform

__all__ = ["add_config", "build_image_transform"]
