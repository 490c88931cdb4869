"""Resizing a checkpoint's positional-embedding table: the functions live in
:mod:`bridle.modeling.pos_embed` (next to the sin-cos table they recompute); importable from
here as before."""

from bridle.modeling.pos_embed import interpolate_pos_embed, resize_pos_embed, sincos_pos_embed  # noqa: F401
from bridle.protocols import StateDict  # noqa: F401

__all__ = ["interpolate_pos_embed", "resize_pos_embed"]
