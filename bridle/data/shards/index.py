"""Reading a shard index (``index.json``) and the member layout of a tar shard."""

import json
import os
import tarfile
from typing import List, Tuple

from bridle.errors import MissingFileError

__all__ = ["INDEX_FORMAT", "INDEX_NAME", "INDEX_VERSION", "SIDECAR_SUFFIX", "read_index", "scan_tar"]

INDEX_FORMAT = "bridle-shards"
INDEX_VERSION = 1
INDEX_NAME = "index.json"
#: Next to each shard: the member offsets of every sample (random access in one seek).
SIDECAR_SUFFIX = ".idx.json"


def read_index(path: str) -> dict:
    """Load and check a shard index; shard paths are resolved against its directory."""
    if os.path.isdir(path):
        path = os.path.join(path, INDEX_NAME)
    if not os.path.isfile(path):
        raise MissingFileError(f"Shard index '{path}' does not exist (tools/make_shards.py writes it).")
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"Shard index '{path}' is not readable JSON: {e}") from e
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise ValueError(f'Shard index \'{path}\': expected a JSON object with "format": "{INDEX_FORMAT}".')
    shards = index.get("shards")
    if not isinstance(shards, list) or not shards:
        raise ValueError(f"Shard index '{path}': \"shards\" must be a non-empty list.")
    root = os.path.dirname(os.path.abspath(path))
    for i, s in enumerate(shards):
        if (
            not isinstance(s, dict)
            or not isinstance(s.get("name"), str)
            or not isinstance(s.get("num_samples"), int)
            or s["num_samples"] < 0
        ):
            raise ValueError(
                f'Shard index \'{path}\': shards[{i}] must be {{"name": str, "num_samples": int >= 0}}; got {s!r}.'
            )
    total = sum(s["num_samples"] for s in shards)
    if int(index.get("num_samples", total)) != total:
        raise ValueError(f"Shard index '{path}': num_samples {index['num_samples']} != sum over shards {total}.")
    index["num_samples"] = total
    index["path"] = path
    index["paths"] = [s["name"] if os.path.isabs(s["name"]) else os.path.join(root, s["name"]) for s in shards]
    index.setdefault("meta", {})
    index.setdefault("decoder", "")
    return index


def scan_tar(path: str) -> List[List[Tuple[str, int, int]]]:
    """Per sample (WebDataset grouping: members sharing the name up to the first dot), its
    members ``(ext, data offset, size)``, from the tar headers only (no data is read)."""
    samples: List[List[Tuple[str, int, int]]] = []
    last = None
    with tarfile.open(path, "r:") as tar:
        for m in tar:
            if not m.isreg():
                continue
            key, _, ext = os.path.basename(m.name).partition(".")
            if key != last:
                samples.append([])
                last = key
            samples[-1].append((ext.lower(), m.offset_data, m.size))
    return samples
