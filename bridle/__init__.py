"""Bridle: self-supervised pretraining with quantized targets (BRIDLE), for any modality.

Importing ``bridle`` registers the core components; modality plugins are loaded lazily by
:func:`bridle.config.get_cfg` / :func:`bridle.plugins.load_plugins`.
"""

__version__ = "0.1.0"

from . import modeling  # noqa: F401,E402  (registers core components)


def load_encoder(path: str, map_location: str = "cpu"):
    """A pretrained encoder (``nn.Module``: input batch -> tokens [B, 1 + N, D]) from an
    exported folder, an exported encoder file or a full BRIDLE checkpoint; ``.cfg`` is the
    config that rebuilt it, ``.export_config`` a folder's config.json."""
    from .checkpoint import load_encoder as _load

    return _load(path, map_location=map_location)


def load_classifier(path: str, map_location: str = "cpu"):
    """(classifier ``nn.Module``: input batch -> logits [B, C], label names) from an exported
    classifier folder or a fine-tuned checkpoint."""
    from .checkpoint import load_classifier as _load

    return _load(path, map_location=map_location)


def load_tokenizer(path: str, map_location: str = "cpu"):
    """A trained tokenizer as a product (:class:`bridle.interop.tokenizer.BridleTokenizer`):
    ``tok(raw)`` -> codes [T, L] (tokens in time order x RQ level; [B, T, L] for a batch) for
    raw input of any length / size, from an exported tokenizer folder or a pretraining
    checkpoint."""
    from .interop.tokenizer import load_tokenizer as _load

    return _load(path, map_location=map_location)
