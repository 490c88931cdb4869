"""Checkpoints: file I/O (:mod:`.io`), formats and encoder loading/export (:mod:`.formats`),
positional-embedding resizing (:mod:`.pos_embed`). Every public name is re-exported here.

The checkpoint formats (a FULL BRIDLE checkpoint, an EXPORTED encoder, bare or wrapped state
dicts) are described in :mod:`.formats`.

Positional embeddings. Fine-tuning at another input size than pretraining changes the patch
grid (e.g. 64x8 -> 32x8 when 1024 frames become 512), so the stored ``pos_embed`` table must be
resized. :func:`interpolate_pos_embed` first checks whether the stored table *is* the fixed
sin-cos table of the old grid (the encoder's positional embedding is never trained); if so it
recomputes the sin-cos table of the new grid exactly (patch at grid index i keeps the embedding
of index i, so a patch keeps the meaning it had during pretraining, e.g. the same time offset).
Any other (learned) table is resampled over the grid: linear for 1-D, bicubic for 2-D,
trilinear for 3-D grids (``align_corners=False``). The cls row is kept as is.
"""

from .formats import (
    ENCODER_FORMAT,
    ENCODER_PREFIX,
    WRAPPER_PREFIXES,
    EncoderLoadReport,
    apply_encoder_meta,
    cfg_from_checkpoint,
    checkpoint_grid_size,
    encoder_of,
    export_encoder,
    extract_encoder_state,
    load_encoder,
    load_encoder_weights,
    merge_cfg_leniently,
    model_state_of,
)
from .io import load_checkpoint_file
from .pos_embed import interpolate_pos_embed, resize_pos_embed

__all__ = [
    "ENCODER_FORMAT",
    "ENCODER_PREFIX",
    "WRAPPER_PREFIXES",
    "EncoderLoadReport",
    "apply_encoder_meta",
    "cfg_from_checkpoint",
    "checkpoint_grid_size",
    "encoder_of",
    "export_encoder",
    "extract_encoder_state",
    "interpolate_pos_embed",
    "load_checkpoint_file",
    "load_encoder",
    "load_encoder_weights",
    "merge_cfg_leniently",
    "model_state_of",
    "resize_pos_embed",
]
