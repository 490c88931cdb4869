"""Bridle: self-supervised pretraining with quantized targets (BRIDLE), for any modality.

Importing ``bridle`` registers the core components; modality plugins are loaded lazily by
:func:`bridle.config.get_cfg` / :func:`bridle.plugins.load_plugins`.
"""

__version__ = "0.1.0"

from . import modeling  # noqa: F401,E402  (registers core components)


def load_encoder(path: str, map_location: str = "cpu"):
    """A pretrained encoder (``nn.Module``: input batch -> tokens [B, 1 + N, D]) from an
    exported encoder or a full BRIDLE checkpoint."""
    from .checkpoint import load_encoder as _load

    return _load(path, map_location=map_location)
