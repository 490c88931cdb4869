"""Checkpoints: file I/O (:mod:`.io`), formats and encoder loading/export (:mod:`.formats`),
exported folders (:mod:`.folder`: safetensors + config + model card, read like a checkpoint
file), positional-embedding resizing (re-exported). Every public name is re-exported here.

The checkpoint formats (a FULL BRIDLE checkpoint, an EXPORTED encoder, bare or wrapped state
dicts) are described in :mod:`.formats`.

Positional-embedding resizing lives in :mod:`bridle.modeling.pos_embed` (next to the sin-cos
table it recomputes); ``interpolate_pos_embed`` / ``resize_pos_embed`` are re-exported here.
"""

from bridle.modeling.pos_embed import interpolate_pos_embed, resize_pos_embed
from bridle.protocols import StateDict

from .folder import FOLDER_FORMAT, is_model_folder, read_folder, read_folder_config
from .formats import (
    ENCODER_FORMAT,
    ENCODER_PREFIX,
    WRAPPER_PREFIXES,
    EncoderLoadReport,
    apply_encoder_meta,
    cfg_from_checkpoint,
    checkpoint_grid_size,
    encoder_export_parts,
    encoder_of,
    export_encoder,
    extract_encoder_state,
    load_classifier,
    load_encoder,
    load_encoder_weights,
    merge_cfg_leniently,
    model_state_of,
)
from .io import load_checkpoint_file

__all__ = [
    "ENCODER_FORMAT",
    "ENCODER_PREFIX",
    "FOLDER_FORMAT",
    "WRAPPER_PREFIXES",
    "EncoderLoadReport",
    "StateDict",
    "apply_encoder_meta",
    "cfg_from_checkpoint",
    "checkpoint_grid_size",
    "encoder_export_parts",
    "encoder_of",
    "export_encoder",
    "extract_encoder_state",
    "interpolate_pos_embed",
    "is_model_folder",
    "load_checkpoint_file",
    "load_classifier",
    "load_encoder",
    "load_encoder_weights",
    "merge_cfg_leniently",
    "model_state_of",
    "read_folder",
    "read_folder_config",
    "resize_pos_embed",
]
