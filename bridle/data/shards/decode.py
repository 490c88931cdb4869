"""Turning one raw sample (``{"__key__": str, "<ext>": bytes, ...}``) into an item: the helper
every SAMPLE_DECODER starts with, and the core "tensors" decoder (items of any dataset)."""

import io
import json
from typing import Any, Callable, Dict, Sequence, Tuple, Type

import numpy as np
import torch

from bridle.registry import SAMPLE_DECODER

__all__ = ["build_tensor_decoder", "decode_tensor_sample", "sample_payload"]


def sample_payload(
    sample: Dict[str, bytes], fields: Sequence[str], what: str, error: Type[Exception] = ValueError
) -> Tuple[str, str, dict]:
    """(key, field, meta) of one sample: the first of ``fields`` (file extensions) it holds and
    its parsed ``json`` field ({} without one). A sample without any of ``fields`` raises
    ``error`` naming the sample and the fields it has (the dataset counts it as unreadable).
    Plugins' SAMPLE_DECODERs start with this, ``what`` naming their payload in the message."""
    key = sample.get("__key__", "?")
    field = next((f for f in fields if f in sample), None)
    if field is None:
        raise error(
            f"sample {key} has no {what} field (one of {list(fields)}); "
            f"fields: {sorted(k for k in sample if not k.startswith('__'))}"
        )
    return key, field, (json.loads(sample["json"]) if "json" in sample else {})


def decode_tensor_sample(sample: Dict[str, bytes]) -> Dict[str, Any]:
    """The item :func:`bridle.data.shards.encode_tensor_item` wrote: ``<name>.npy`` fields as
    tensors, the ``json`` field's numbers and lists as tensors, its other values as they are."""
    item: Dict[str, Any] = {}
    for ext, value in sample.items():
        if ext.endswith(".npy"):
            item[ext[: -len(".npy")]] = torch.from_numpy(np.load(io.BytesIO(value), allow_pickle=False))
    if "json" in sample:
        for k, v in json.loads(sample["json"]).items():
            item[k] = torch.tensor(v) if isinstance(v, (int, float, list)) else v
    if "input" not in item:
        raise ValueError(f"sample {sample.get('__key__')} has no 'input.npy' field")
    return item


@SAMPLE_DECODER.register(name="tensors")
def build_tensor_decoder(cfg, mode: str, meta: dict) -> Callable[[Dict[str, bytes]], dict]:
    """Samples written from any dataset's items (tools/make_shards.py --dataset): tensors are
    stored as they came out of the dataset (no transform is applied again)."""
    return decode_tensor_sample
