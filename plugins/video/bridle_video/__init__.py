"""Bridle video plugin (entry point ``video = bridle_video``).

Importing it registers:
- PATCH_EMBED "tubelet" (clip [3, T, H, W] -> 2 x 16 x 16 tubelets; 16 x 224 x 224 -> 8 x 14 x 14),
- MASK_GENERATOR "tube" (one spatial mask repeated over time, VideoMAE),
- DATASET "kinetics_csv" (``path label`` CSV, decord, multi-view test) and "video_folder"
  (unlabeled clips),
- SAMPLE_DECODER "video" (video bytes + JSON label of a "shards" dataset).
``add_config`` declares ``INPUT.VIDEO.*`` and ``DATASETS.VIDEO.*``. Item format: clip_dataset.py.
"""

from . import adapter, kinetics, masking, patch_embed, shards, video_folder  # noqa: F401  (registration)
from .config import add_config
from .transforms import ClipTransform

__all__ = ["ClipTransform", "add_config"]
