"""Codebook quantizers: ``vq`` (normalised, BEATs NormEMA) and ``rq`` (residual), registered in
:data:`bridle.registry.QUANTIZER`. Build one from a config with :func:`build_quantizer`."""
from bridle.registry import QUANTIZER

from .base import INIT_METHODS, CodebookQuantizer, QuantizerOutput
from .kmeans import KMeansResult, assign_nearest, cosine_kmeans, fit_kmeans
from .rq import ResidualQuantizer
from .utils import (
    all_reduce_sum_,
    broadcast_many_,
    ema_,
    l2norm,
    norm_ema_,
    sample_rows,
    scale_grad,
    usage_metrics,
)
from .vq import VectorQuantizer

__all__ = [
    "INIT_METHODS",
    "CodebookQuantizer",
    "KMeansResult",
    "QuantizerOutput",
    "ResidualQuantizer",
    "VectorQuantizer",
    "all_reduce_sum_",
    "broadcast_many_",
    "build_quantizer",
    "assign_nearest",
    "cosine_kmeans",
    "fit_kmeans",
    "ema_",
    "l2norm",
    "norm_ema_",
    "sample_rows",
    "scale_grad",
    "usage_metrics",
]


def build_quantizer(cfg) -> CodebookQuantizer:
    """``QUANTIZER.get(cfg.MODEL.QUANTIZER.NAME).from_config(cfg.MODEL.QUANTIZER)``."""
    return QUANTIZER.get(cfg.MODEL.QUANTIZER.NAME).from_config(cfg.MODEL.QUANTIZER)
