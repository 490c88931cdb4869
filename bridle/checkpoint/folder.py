"""Exported model FOLDERS: what leaves Bridle (written by :func:`bridle.interop.hub.export_folder`,
``tools/export_encoder.py SRC DST_FOLDER``).

A folder holds no pickle, only:

* ``model.safetensors``: the weights (the safetensors format: tensors and their names, nothing
  executable). An encoder's keys are timm's VisionTransformer names (``cls_token``,
  ``pos_embed``, ``patch_embed.proj.*``, ``blocks.N.*``, ``norm.*``); a classifier adds
  ``fc_norm.*`` and ``head.*`` (and ``bn.*`` for a BatchNorm linear probe) and leaves out the
  encoder's final ``norm.*``, which its pooling never reads (timm's ``global_pool="avg"``
  layout); a tokenizer keeps its module's own names (``vit.*`` / ``patch_embed.*``,
  ``proj.*``, ``quantizer.*``).
* ``config.yaml``: the Bridle config that rebuilds the model (the run's config, as stored in the
  checkpoint).
* ``config.json``: what the model is, readable without Bridle: ``format``, ``kind`` (encoder |
  classifier | tokenizer), the architecture (``embed_dim``, ``depth``, ``num_heads``,
  ``input_size``, ``patch_size``, ``in_chans``, ``grid_size``), the ``input`` the plugin
  describes (modality, preprocessing), ``timm`` (``model_name`` and ``kwargs`` for
  ``timm.create_model``, null when timm has no equivalent), ``label_names`` (classifier),
  ``quantizer`` (tokenizer) and ``source`` (checkpoint, iteration).
* ``README.md``: the generated model card.

:func:`read_folder` turns a folder back into the dict a checkpoint file gives (``{"model":
state dict in Bridle's layout, "cfg": YAML text, "meta": ...}``), so every loader of Bridle
(:func:`bridle.checkpoint.load_checkpoint_file` and all that uses it: ``bridle.load_encoder``,
``MODEL.WEIGHTS``, tools/extract_features.py, tools/tokenize_dataset.py) reads folders too.
"""

import json
import os
from typing import Union

import torch

from bridle.errors import MissingFileError, UserError

FOLDER_FORMAT = "bridle-folder-v1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_YAML = "config.yaml"
CONFIG_JSON = "config.json"
CARD_FILE = "README.md"
KINDS = ("encoder", "classifier", "tokenizer")
#: Modules of a classifier (bridle.modeling.classifier.EncoderClassifier) besides its encoder.
CLASSIFIER_OWN = ("fc_norm.", "bn.", "head.")
TOKENIZER_PREFIX = "tokenizer."


class FolderError(UserError, RuntimeError):
    """An exported folder that cannot be used (wrong format, corrupt file); names the file."""


def is_model_folder(path: Union[str, os.PathLike]) -> bool:
    """Whether ``path`` is a directory holding an exported folder's config.json."""
    path = os.fspath(path)
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_JSON))


def read_folder_config(path: Union[str, os.PathLike]) -> dict:
    """The ``config.json`` of an exported folder (checked: format and kind)."""
    path = os.fspath(path)
    cj = os.path.join(path, CONFIG_JSON)
    if not os.path.isfile(cj):
        raise MissingFileError(f"{path}: not an exported Bridle folder (no {CONFIG_JSON}).")
    try:
        with open(cj) as f:
            conf = json.load(f)
    except (OSError, ValueError) as e:
        raise FolderError(f"{cj}: unreadable JSON ({e}).") from None
    if not isinstance(conf, dict) or conf.get("format") != FOLDER_FORMAT or conf.get("kind") not in KINDS:
        raise FolderError(
            f"{cj}: expected a Bridle export (format '{FOLDER_FORMAT}', kind one of {list(KINDS)}); "
            f"got format {conf.get('format') if isinstance(conf, dict) else None!r}."
        )
    return conf


def read_folder(path: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu") -> dict:
    """An exported folder as a checkpoint dict: ``{"model": state (Bridle layout: a classifier's
    encoder keys prefixed ``encoder.``, a tokenizer's ``tokenizer.``), "cfg": config.yaml text,
    "meta": encoder dims (+ ``format`` for an encoder), "export": config.json}``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .formats import ENCODER_FORMAT

    path = os.fspath(path)
    conf = read_folder_config(path)
    weights = os.path.join(path, WEIGHTS_FILE)
    if not os.path.isfile(weights):
        raise MissingFileError(f"{path}: the exported folder has no {WEIGHTS_FILE}.")
    device = str(map_location) if isinstance(map_location, (str, torch.device)) else "cpu"
    try:
        state = load_file(weights, device=device)
    except (SafetensorError, OSError, ValueError) as e:
        raise FolderError(f"{weights}: incomplete or corrupt safetensors file ({e}).") from None
    text = ""
    cy = os.path.join(path, CONFIG_YAML)
    if os.path.isfile(cy):
        with open(cy) as f:
            text = f.read()
    kind = conf["kind"]
    meta = {k: conf[k] for k in ("embed_dim", "depth", "num_heads", "grid_size", "backbone") if conf.get(k)}
    if kind == "encoder":
        model = dict(state)
        meta["format"] = ENCODER_FORMAT
    elif kind == "classifier":
        model = {(k if k.startswith(CLASSIFIER_OWN) else "encoder." + k): v for k, v in state.items()}
    else:
        model = {TOKENIZER_PREFIX + k: v for k, v in state.items()}
        meta = {}  # a tokenizer's dims are the config's MODEL.TOKENIZER, not an encoder's
    return {
        "model": model,
        "cfg": text,
        "meta": meta,
        "export": conf,
        "iteration": conf.get("source", {}).get("iteration"),
    }
