"""Codebook quantizers: ``vq`` (normalised, BEATs NormEMA) and ``rq`` (residual), registered in
:data:`bridle.registry.QUANTIZER`. Build one from a config with :func:`build_quantizer`."""

import operator

import torch

from bridle.protocols import Quantizer, QuantizerClass, check_contract, supports
from bridle.registry import QUANTIZER

from .base import INIT_METHODS, CodebookQuantizer, QuantizerOutput
from .kmeans import KMeansResult, assign_nearest, cosine_kmeans, fit_kmeans
from .options import QuantizerOptions
from .rq import ResidualQuantizer
from .utils import (
    UsageWindow,
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
    "QuantizerOptions",
    "QuantizerOutput",
    "ResidualQuantizer",
    "UsageWindow",
    "VectorQuantizer",
    "all_reduce_sum_",
    "broadcast_many_",
    "build_quantizer",
    "check_quantizer_output",
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
    """``QUANTIZER.get(cfg.MODEL.QUANTIZER.NAME).from_config(cfg.MODEL.QUANTIZER)``, checked
    against :class:`bridle.protocols.QuantizerClass` and :class:`bridle.protocols.Quantizer`:
    an nn.Module with int ``num_levels``, ``codebook_size``, ``code_dim`` (=
    MODEL.QUANTIZER.CODE_DIM, what the tokenizer projects to) and ``forward``."""
    import torch.nn as nn

    name = cfg.MODEL.QUANTIZER.NAME
    cls = QUANTIZER.get(name)
    where = QUANTIZER.label(name, "MODEL.QUANTIZER.NAME")
    if not supports(cls, QuantizerClass):
        raise TypeError(
            f"{where} has no from_config(qcfg) classmethod, required by bridle.protocols.QuantizerClass; "
            "the core builds it as cls.from_config(cfg.MODEL.QUANTIZER)."
        )
    q = cls.from_config(cfg.MODEL.QUANTIZER)
    if not isinstance(q, nn.Module):
        raise TypeError(f"{where}: from_config returned {type(q).__name__}, not an nn.Module.")
    not_int = [a for a in ("num_levels", "codebook_size", "code_dim") if hasattr(q, a) and not _is_int(getattr(q, a))]
    check_contract(q, Quantizer, where, lacks=[f"{a} (an int)" for a in not_int])
    if int(q.code_dim) != int(cfg.MODEL.QUANTIZER.CODE_DIM):
        raise ValueError(
            f"{where}: .code_dim {q.code_dim} != MODEL.QUANTIZER.CODE_DIM {cfg.MODEL.QUANTIZER.CODE_DIM} "
            "(the tokenizer projects its features to CODE_DIM)."
        )
    return q


def _is_int(value) -> bool:
    try:
        operator.index(value)  # python / numpy ints (not floats, not None)
        return True
    except TypeError:
        return False


def check_quantizer_output(out, z, quantizer):
    """``out`` unchanged if it is a QuantizerOutput of the right shapes for input ``z`` [..., D];
    else raise naming the quantizer (shapes only: no host sync)."""
    name = type(quantizer).__name__
    fields = ("quantized", "codes", "loss", "metrics", "soft_codes")
    if not all(hasattr(out, f) for f in fields):
        raise TypeError(
            f"Quantizer {name}.forward must return a bridle.modeling.quantizers.QuantizerOutput (fields {fields}); "
            f"got {type(out).__name__} without {[f for f in fields if not hasattr(out, f)]}."
        )
    lead = tuple(z.shape[:-1])
    want = {"quantized": lead + (int(quantizer.code_dim),), "codes": lead + (int(quantizer.num_levels),)}
    shapes = {k: tuple(getattr(out, k).shape) for k in want}
    bad = [f"{k} {shapes[k]} (expected {v})" for k, v in want.items() if shapes[k] != v]
    if out.codes.dtype != torch.long:
        bad.append(f"codes dtype {out.codes.dtype} (expected torch.long)")
    if bad:
        raise ValueError(f"Quantizer {name} output for input {tuple(z.shape)}: {'; '.join(bad)}.")
    return out
