"""Checkpoint formats: model/encoder state extraction, stored configs, encoder loading and export.

Two formats hold encoder weights:

* a FULL BRIDLE checkpoint, written by the trainers (fvcore's Checkpointer):
  ``{"model": state_dict, "cfg": YAML text of the run config, "iteration", "optimizer",
  "trainer", ...}``. A pretraining model's encoder keys start with ``encoder.`` (the other
  networks with ``decoder.``, ``tokenizer.``, ``estimator.``, ...); a fine-tuned
  ``EncoderClassifier`` stores ``encoder.*``, ``fc_norm.*`` and ``head.*``.
* an EXPORTED encoder (:func:`export_encoder`): ``{"model": encoder state dict in timm layout
  (cls_token, pos_embed, patch_embed.proj.*, blocks.N.*, norm.*), "cfg": YAML text,
  "meta": {"embed_dim", "depth", "num_heads", "grid_size", "format": "bridle-encoder-v1"}}``.

A bare (timm-layout) state dict, and state dicts whose keys carry a ``module.`` (DDP) or
``_orig_mod.`` (torch.compile) prefix, are accepted too.
"""

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from bridle.modeling.pos_embed import resize_pos_embed
from bridle.protocols import StateDict

from .io import CheckpointError, atomic_save, load_checkpoint_file

logger = logging.getLogger(__name__)

ENCODER_FORMAT = "bridle-encoder-v1"
ENCODER_PREFIX = "encoder."
# Prefixes added by wrappers around a module: DistributedDataParallel, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


# ----------------------------------------------------------------------------- reading
def _is_state_dict(d: Any) -> bool:
    return isinstance(d, dict) and len(d) > 0 and all(isinstance(v, torch.Tensor) for v in d.values())


def model_state_of(ckpt: dict) -> StateDict:
    """The model state dict of a full/exported checkpoint (key ``model`` or ``state_dict``) or
    of a bare state dict, with wrapper prefixes (``module.``, ``_orig_mod.``) removed."""
    if isinstance(ckpt.get("model"), dict):
        state = ckpt["model"]
    elif isinstance(ckpt.get("state_dict"), dict):
        state = ckpt["state_dict"]
    elif _is_state_dict(ckpt):
        state = ckpt
    else:
        raise KeyError(
            "Checkpoint has no model weights: expected a dict with key 'model' (Bridle/fvcore "
            f"checkpoint) or 'state_dict', or a bare state dict; found keys {sorted(ckpt)[:10]}."
        )
    out: StateDict = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            continue
        changed = True
        while changed:
            changed = False
            for p in WRAPPER_PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p) :], True
        out[k] = v
    return out


def _is_timm_encoder_key(k: str) -> bool:
    return k in ("cls_token", "pos_embed") or k.startswith(("patch_embed.", "blocks.", "norm."))


def extract_encoder_state(ckpt: dict) -> StateDict:
    """The encoder's state dict (timm layout, no prefix) from a full BRIDLE checkpoint (keys
    ``encoder.*``), a fine-tuned classifier checkpoint, an exported encoder, or a bare state
    dict (with or without ``module.`` prefixes). Raises when nothing looks like an encoder."""
    state = model_state_of(ckpt)
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else {}
    if any(k.startswith(ENCODER_PREFIX) for k in state):
        enc = {k[len(ENCODER_PREFIX) :]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}
    elif meta.get("format") == ENCODER_FORMAT:
        enc = dict(state)  # an exported encoder: every key is the backbone's own (timm or not)
    else:
        enc = {k: v for k, v in state.items() if _is_timm_encoder_key(k)}
    if not enc:
        raise KeyError(
            "No encoder weights in the checkpoint: expected keys prefixed 'encoder.' (full BRIDLE "
            "checkpoint) or timm-layout keys (cls_token, pos_embed, patch_embed.*, blocks.N.*, norm.*); "
            f"found keys like {sorted(state)[:8]}."
        )
    return enc


# ----------------------------------------------------------------------------- config
def merge_cfg_leniently(cfg, other, prefix: str = "") -> List[str]:
    """Merge ``other`` (a CfgNode / dict) into ``cfg`` key by key, skipping keys ``cfg`` lacks
    (e.g. a plugin that is not loaded) or values of an incompatible type. Returns the skipped
    full key names."""
    from yacs.config import _check_and_coerce_cfg_value_type

    from bridle.config import CfgNode

    skipped: List[str] = []
    for k, v in other.items():
        full = prefix + k
        if k not in cfg:
            skipped.append(full)
            continue
        cur = cfg[k]
        if isinstance(cur, CfgNode):
            if isinstance(v, dict):
                skipped.extend(merge_cfg_leniently(cur, v, full + "."))
            else:
                skipped.append(full)
            continue
        if isinstance(v, dict):
            skipped.append(full)
            continue
        try:
            cfg[k] = _check_and_coerce_cfg_value_type(v, cur, k, full)
        except ValueError:
            skipped.append(full)
    return skipped


def cfg_from_checkpoint(ckpt: dict, cfg=None):
    """A config for the checkpoint's encoder: ``cfg`` (default :func:`bridle.config.get_cfg`)
    with the YAML text stored under ``cfg`` merged leniently and the exported ``meta`` dims
    (EMBED_DIM/DEPTH/NUM_HEADS) applied, since the weights determine them."""
    from bridle.config import CfgNode, get_cfg

    cfg = get_cfg() if cfg is None else cfg
    text = ckpt.get("cfg")
    if isinstance(text, str) and text.strip():
        stored = CfgNode.load_cfg(text)
        skipped = merge_cfg_leniently(cfg, stored)
        if skipped:
            logger.info(f"Config keys stored in the checkpoint but unknown here (ignored): {skipped[:20]}")
    apply_encoder_meta(cfg, ckpt.get("meta"))
    return cfg


def apply_encoder_meta(cfg, meta: Optional[dict]) -> None:
    """Apply an exported encoder's ``meta`` (its backbone name and dims) to ``cfg``."""
    if not meta:
        return
    enc = cfg.MODEL.ENCODER
    if meta.get("backbone") and "NAME" in enc:
        enc.NAME = str(meta["backbone"])
    for key, name in (("embed_dim", "EMBED_DIM"), ("depth", "DEPTH"), ("num_heads", "NUM_HEADS")):
        if meta.get(key):
            enc[name] = int(meta[key])


def _grid_from_cfg(cfg, embed_dim: int) -> Optional[Tuple[int, ...]]:
    """Patch grid of the encoder ``cfg`` describes: built through the PATCH_EMBED registry
    (plugins may shape the grid), else INPUT_SIZE // PATCH_SIZE."""
    from bridle.modeling.patch_embed import build_patch_embed

    try:
        return tuple(int(g) for g in build_patch_embed(cfg, embed_dim).grid_size)
    except Exception as e:  # plugin missing or stale keys: fall back to the arithmetic
        logger.debug(f"Could not build the stored patch embedding ({e}); using INPUT_SIZE // PATCH_SIZE.")
    p = cfg.MODEL.PATCH_EMBED
    pairs = list(zip(p.INPUT_SIZE, p.PATCH_SIZE))
    if len(p.INPUT_SIZE) == len(p.PATCH_SIZE) and all(int(b) > 0 and int(a) % int(b) == 0 for a, b in pairs):
        return tuple(int(a) // int(b) for a, b in zip(p.INPUT_SIZE, p.PATCH_SIZE))
    return None


def checkpoint_grid_size(ckpt: dict) -> Optional[Tuple[int, ...]]:
    """The patch grid the checkpoint's encoder was trained on: ``meta.grid_size`` of an exported
    encoder, else derived from its stored config; None when unknown."""
    meta = ckpt.get("meta") or {}
    if meta.get("grid_size"):
        return tuple(int(g) for g in meta["grid_size"])
    text = ckpt.get("cfg")
    if not (isinstance(text, str) and text.strip()):
        return None
    try:
        from bridle.config import get_cfg

        cfg = cfg_from_checkpoint(ckpt, get_cfg())
        state = extract_encoder_state(ckpt)
        dim = int(state["pos_embed"].shape[-1]) if "pos_embed" in state else 0
        return _grid_from_cfg(cfg, dim or 8)
    except Exception as e:
        logger.warning(f"Could not derive the pretraining patch grid from the stored config: {e}")
        return None


# ----------------------------------------------------------------------------- loading
@dataclass
class EncoderLoadReport:
    """What :func:`load_encoder_weights` did."""

    source: str
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)
    pos_embed: str = "unchanged"

    def __str__(self) -> str:
        lines = [f"Encoder weights from {self.source}: {len(self.loaded)} tensors loaded; pos_embed {self.pos_embed}."]
        if self.missing:
            lines.append(f"  missing in the checkpoint ({len(self.missing)}): {self.missing}")
        if self.mismatched:
            lines.append(
                "  shape mismatch (checkpoint vs model): "
                + ", ".join(f"{k} {list(a)} vs {list(b)}" for k, a, b in self.mismatched)
            )
        if self.unexpected:
            lines.append(f"  unused checkpoint keys ({len(self.unexpected)}): {self.unexpected}")
        return "\n".join(lines)


def _unwrap(model: nn.Module) -> nn.Module:
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return getattr(model, "_orig_mod", model)


def encoder_of(model: nn.Module) -> nn.Module:
    """The encoder inside ``model``: its ``encoder`` attribute, else the model itself."""
    model = _unwrap(model)
    enc = getattr(model, "encoder", None)
    return _unwrap(enc) if isinstance(enc, nn.Module) else model


def load_encoder_weights(
    model: nn.Module,
    path_or_state: Union[str, os.PathLike, dict],
    strict_encoder: bool = True,
    old_grid_size: Optional[Sequence[int]] = None,
) -> EncoderLoadReport:
    """Load encoder weights (any format above) into ``model``'s encoder (``model.encoder`` or
    ``model`` itself), resizing ``pos_embed`` to the model's patch grid when needed.

    Raises when no encoder tensor matches the model (a silently empty load), and, with
    ``strict_encoder``, when any encoder tensor of the model is missing from the checkpoint
    or has another shape. Unused checkpoint keys are only reported."""
    if isinstance(path_or_state, (str, os.PathLike)):
        source = os.fspath(path_or_state)
        ckpt = load_checkpoint_file(source)
    elif isinstance(path_or_state, dict):
        source, ckpt = "<in-memory checkpoint>", path_or_state
    else:
        raise TypeError(f"load_encoder_weights: expected a path or a dict; got {type(path_or_state).__name__}.")
    encoder = encoder_of(model)
    state = extract_encoder_state(ckpt)
    own = encoder.state_dict()
    report = EncoderLoadReport(source=source)

    if "pos_embed" in state and "pos_embed" in own and state["pos_embed"].shape != own["pos_embed"].shape:
        new_grid = getattr(encoder, "grid_size", None)
        if new_grid is None:
            raise ValueError(
                f"{source}: pos_embed {list(state['pos_embed'].shape)} differs from the model's "
                f"{list(own['pos_embed'].shape)} and the model has no 'grid_size' to resize it to."
            )
        if state["pos_embed"].shape[-1] == own["pos_embed"].shape[-1]:
            grid = old_grid_size if old_grid_size is not None else checkpoint_grid_size(ckpt)
            extra = own["pos_embed"].shape[-2] - math.prod(new_grid)
            table, report.pos_embed = resize_pos_embed(state["pos_embed"], new_grid, grid, num_extra_tokens=extra)
            state = dict(state)
            state["pos_embed"] = table
            logger.info(f"{source}: pos_embed resized to grid {list(new_grid)} ({report.pos_embed}).")

    to_load: StateDict = {}
    for k, v in state.items():
        if k not in own:
            report.unexpected.append(k)
        elif tuple(v.shape) != tuple(own[k].shape):
            report.mismatched.append((k, tuple(v.shape), tuple(own[k].shape)))
        else:
            to_load[k] = v
    report.missing = [k for k in own if k not in state]
    report.loaded = sorted(to_load)
    if not to_load:
        raise CheckpointError(
            f"No encoder weight in {source} matches the model (refusing an empty load). The model's "
            f"encoder expects keys like {sorted(own)[:6]}; the checkpoint's encoder has {sorted(state)[:6]}."
            + (f" Shape mismatches: {report.mismatched[:4]}." if report.mismatched else "")
        )
    if strict_encoder and (report.missing or report.mismatched):
        raise CheckpointError(
            f"Encoder weights from {source} do not cover the model (strict_encoder=True):\n{report}\n"
            "Check that MODEL.ENCODER (SIZE/EMBED_DIM/DEPTH/NUM_HEADS) and MODEL.PATCH_EMBED "
            "(IN_CHANS/PATCH_SIZE) match the pretrained encoder."
        )
    encoder.load_state_dict(to_load, strict=False)
    logger.info(str(report))
    return report


# ----------------------------------------------------------------------------- export
def _encoder_dims(state: StateDict) -> Tuple[int, int]:
    ref = state.get("cls_token", state.get("pos_embed"))
    if ref is None:
        raise KeyError("Encoder state has neither 'cls_token' nor 'pos_embed'; cannot tell its width.")
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("blocks.") and k.split(".")[1].isdigit()}
    return int(ref.shape[-1]), (max(blocks) + 1 if blocks else 0)


def encoder_export_parts(ckpt: dict, source: str = "<checkpoint>") -> Tuple[StateDict, str, dict]:
    """(encoder state dict in timm layout, config YAML text, meta) of a checkpoint dict (full
    BRIDLE checkpoint, classifier checkpoint, exported encoder or folder): what every export
    writes. Raises when the dims of the stored config and of the weights disagree, or when
    neither config nor meta gives the heads and the patch grid."""
    from bridle.config import get_cfg
    from bridle.modeling.vit import vit_dims

    state = {k: v.detach().cpu().contiguous().clone() for k, v in extract_encoder_state(ckpt).items()}
    embed_dim, depth = _encoder_dims(state)
    old_meta = ckpt.get("meta") or {}
    text = ckpt.get("cfg") if isinstance(ckpt.get("cfg"), str) else ""
    num_heads, grid = old_meta.get("num_heads"), old_meta.get("grid_size")
    if text.strip():
        cfg = cfg_from_checkpoint(ckpt, get_cfg())
        c_dim, c_depth, c_heads = vit_dims(cfg.MODEL.ENCODER)
        if (c_dim, c_depth) != (embed_dim, depth):
            raise ValueError(
                f"{source}: the stored config describes an encoder of width {c_dim} and depth {c_depth} "
                f"(MODEL.ENCODER) but the weights have width {embed_dim} and depth {depth}."
            )
        num_heads = num_heads or c_heads
        grid = grid or _grid_from_cfg(cfg, embed_dim)
        backbone = old_meta.get("backbone") or str(cfg.MODEL.ENCODER.NAME)
    else:
        backbone = old_meta.get("backbone")
    if not num_heads or not grid:
        raise ValueError(
            f"{source} has no stored config (key 'cfg') or meta: the number of heads and the patch "
            "grid of the encoder cannot be known. Export from a checkpoint written by a Bridle trainer."
        )
    grid = [int(g) for g in grid]
    if "pos_embed" in state and state["pos_embed"].shape[-2] - 1 != math.prod(grid):
        raise ValueError(
            f"{source}: pos_embed has {state['pos_embed'].shape[-2] - 1} patch rows but the stored "
            f"config gives a patch grid {grid} ({math.prod(grid)} patches)."
        )
    meta = {
        "embed_dim": embed_dim,
        "depth": depth,
        "num_heads": int(num_heads),
        "grid_size": grid,
        "format": ENCODER_FORMAT,
    }
    if backbone:
        meta["backbone"] = backbone  # MODEL.ENCODER.NAME: downstream configs need not repeat it
    return state, text, meta


def export_encoder(
    src_path: Union[str, os.PathLike],
    dst_path: Union[str, os.PathLike],
    timm_path: Optional[Union[str, os.PathLike]] = None,
) -> dict:
    """Write the encoder of ``src_path`` (full BRIDLE checkpoint, classifier checkpoint,
    exported encoder or folder) as an exported encoder FILE (the ``.pth`` layout; folders are
    written by :func:`bridle.interop.hub.export_folder`); with ``timm_path`` also write the
    plain timm-layout state dict there. Returns the ``meta`` dict."""
    src_path = os.fspath(src_path)
    state, text, meta = encoder_export_parts(load_checkpoint_file(src_path), src_path)
    dst_path = os.fspath(dst_path)
    os.makedirs(os.path.dirname(os.path.abspath(dst_path)), exist_ok=True)
    atomic_save({"model": state, "cfg": text, "meta": meta}, dst_path)
    logger.info(f"Exported encoder ({len(state)} tensors, {meta}) from {src_path} to {dst_path}")
    if timm_path:
        timm_path = os.fspath(timm_path)
        os.makedirs(os.path.dirname(os.path.abspath(timm_path)), exist_ok=True)
        atomic_save(state, timm_path)
        logger.info(f"Wrote the timm-layout state dict to {timm_path}")
    return meta


def _encoder_from_weights(state: StateDict, meta: dict) -> nn.Module:
    """A VisionTransformer with a core conv patch embedding whose shapes come from the weights
    (for checkpoints without a stored config)."""
    from bridle.modeling.patch_embed import ConvPatchEmbed
    from bridle.modeling.vit import VisionTransformer

    w = state.get("patch_embed.proj.weight")
    if w is None or not meta.get("grid_size") or not meta.get("num_heads"):
        raise ValueError(
            "The checkpoint has no stored config, and its meta/weights do not give the patch "
            "embedding (patch_embed.proj.weight) and meta.grid_size / meta.num_heads."
        )
    patch = tuple(int(p) for p in w.shape[2:])
    grid = tuple(int(g) for g in meta["grid_size"])
    embed = ConvPatchEmbed([g * p for g, p in zip(grid, patch)], patch, int(w.shape[1]), int(w.shape[0]))
    return VisionTransformer(embed, int(meta["embed_dim"]), int(meta["depth"]), int(meta["num_heads"]))


def load_encoder(path: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu") -> nn.Module:
    """The encoder of ``path`` (exported folder, exported encoder file or full checkpoint),
    rebuilt from the config and meta stored with it, with every weight loaded (strict), in eval
    mode. ``model(x)`` returns the normed tokens [B, 1 + N, D] (cls first).

    The returned module carries ``model.cfg`` (the frozen config that rebuilt it: the input
    keys of its plugin, ``MODEL.PATCH_EMBED.INPUT_SIZE`` / ``PATCH_SIZE``; None for a
    checkpoint without a stored config) and ``model.export_config`` (a folder's config.json,
    else None); ``model.grid_size`` / ``model.patch_embed.patch_size`` give the patch grid."""
    from bridle.config import get_cfg
    from bridle.modeling.vit import build_encoder

    ckpt = load_checkpoint_file(path, map_location=map_location)
    if (ckpt.get("export") or {}).get("kind") == "tokenizer":
        raise CheckpointError(f"{os.fspath(path)} is an exported tokenizer; load it with bridle.load_tokenizer.")
    text = ckpt.get("cfg")
    cfg = None
    if isinstance(text, str) and text.strip():
        cfg = cfg_from_checkpoint(ckpt, get_cfg())
        cfg.MODEL.ENCODER.DROP_PATH = 0.0
        cfg.MODEL.ENCODER.GRAD_CHECKPOINT = False
        model = build_encoder(cfg)
        cfg.freeze()
    else:
        state = extract_encoder_state(ckpt)
        meta = dict(ckpt.get("meta") or {})
        meta.setdefault("embed_dim", _encoder_dims(state)[0])
        meta.setdefault("depth", _encoder_dims(state)[1])
        model = _encoder_from_weights(state, meta)
    load_encoder_weights(model, ckpt, strict_encoder=True)
    model.cfg = cfg
    model.export_config = ckpt.get("export")
    if isinstance(map_location, (str, torch.device)) and str(map_location) != "cpu":
        model.to(map_location)
    return model.eval()


def load_classifier(
    path: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu"
) -> Tuple[nn.Module, List[str]]:
    """(classifier, label names) of an exported classifier folder or a fine-tuned checkpoint:
    the MODEL.DOWNSTREAM_ARCHITECTURE model of the stored config (an EncoderClassifier),
    every weight loaded, in eval mode (``model(x)`` -> logits [B, C]). Label names are the
    folder's ``label_names`` (``class_<i>`` when none were exported). The model carries
    ``.cfg`` and ``.export_config`` like :func:`load_encoder`'s."""
    from bridle.config import get_cfg
    from bridle.modeling.classifier import EncoderClassifier
    from bridle.registry import META_ARCH

    ckpt = load_checkpoint_file(path, map_location=map_location)
    text = ckpt.get("cfg")
    state = model_state_of(ckpt)
    if not (isinstance(text, str) and text.strip()) or not any(k.startswith("head.") for k in state):
        raise CheckpointError(
            f"{os.fspath(path)}: not a classifier (expected a stored config and 'head.*' weights: a folder "
            "exported from a fine-tuning / linear-probe checkpoint, or that checkpoint)."
        )
    cfg = cfg_from_checkpoint(ckpt, get_cfg())
    cfg.MODEL.ENCODER.DROP_PATH = 0.0
    cfg.MODEL.ENCODER.GRAD_CHECKPOINT = False
    name = str(getattr(cfg.MODEL, "DOWNSTREAM_ARCHITECTURE", "EncoderClassifier") or "EncoderClassifier")
    model = (META_ARCH.get(name) if name in META_ARCH else EncoderClassifier)(cfg)
    cfg.freeze()
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    # A folder leaves out the encoder's final norm, which the classifier's pooling never reads.
    unread = [k for k in missing if not (k.startswith("encoder.norm.") and getattr(model, "pool_before_norm", False))]
    unexpected = [k for k in state if k not in own]
    if unread or unexpected:
        raise CheckpointError(
            f"{os.fspath(path)}: the classifier weights do not match its config: missing {unread[:6]}, "
            f"unexpected {unexpected[:6]}."
        )
    model.load_state_dict(state, strict=False)
    export = ckpt.get("export") or {}
    names = list(export.get("label_names") or [f"class_{i}" for i in range(int(model.num_classes))])
    model.cfg = cfg
    model.export_config = ckpt.get("export")
    if isinstance(map_location, (str, torch.device)) and str(map_location) != "cpu":
        model.to(map_location)
    return model.eval(), names
