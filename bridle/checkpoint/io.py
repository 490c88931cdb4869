"""Checkpoint file I/O: the one loader of every checkpoint file in Bridle."""
import logging
import os
from typing import Union

import torch

logger = logging.getLogger(__name__)


def load_checkpoint_file(path: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu") -> dict:
    """``torch.load`` a checkpoint file into a dict. Full checkpoints hold RNG states and
    optimizer state (not only tensors), so this loads with ``weights_only=False``: only load
    files you trust."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file '{path}' does not exist.")
    obj = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(obj, dict):
        raise TypeError(f"Checkpoint '{path}' holds a {type(obj).__name__}; expected a dict (state dict or checkpoint).")
    return obj


