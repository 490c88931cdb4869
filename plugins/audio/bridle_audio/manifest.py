"""Readers and writers of the on-disk metadata: AudioMAE JSON manifests, class-label CSVs,
ESC-50's ``meta/esc50.csv``, AST per-clip weight files, and recursive folder listing.
Shared by the datasets and by ``tools/prepare_audio.py``."""

import csv
import json
import os
import re
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

from bridle.errors import MissingFileError, UserError

DEFAULT_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")
ESC50_NUM_CLASSES = 50
ESC50_NUM_FOLDS = 5


class ManifestError(UserError, ValueError):
    """Malformed metadata; the message names the file and what was expected."""


def read_manifest(path: str, key: str = "") -> List[Dict[str, str]]:
    """Entries ``{"wav": path, "labels": "id1,id2"}`` of an AudioMAE manifest, which is either
    ``{"data": [...]}`` or a bare list. ``labels`` may be missing (unlabeled clips). ``key``: the
    config key that named the file, for the error message."""
    if not os.path.isfile(path):
        raise MissingFileError(
            f"{key + ' ' if key else 'Manifest '}'{path}' does not exist (expected an AudioMAE JSON manifest "
            '{"data": [{"wav": ..., "labels": ...}]}; tools/prepare_audio.py writes them).'
        )
    try:
        with open(path, "r", encoding="utf-8") as f:
            obj = json.load(f)
    except json.JSONDecodeError as e:
        raise ManifestError(f"Manifest '{path}' is not valid JSON: {e}") from e
    entries = obj.get("data") if isinstance(obj, dict) else obj
    if not isinstance(entries, list):
        raise ManifestError(
            f'Manifest \'{path}\' must be {{"data": [...]}} or a list of {{"wav", "labels"}} '
            f"entries; got a {type(obj).__name__}" + (f" with keys {sorted(obj)}" if isinstance(obj, dict) else "")
        )
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("wav"), str) or not e["wav"]:
            raise ManifestError(f"Manifest '{path}': entry {i} has no string 'wav' field: {e!r}")
        labels = e.get("labels", "")
        if labels is None:
            labels = ""
        if not isinstance(labels, str):
            raise ManifestError(
                f"Manifest '{path}': entry {i} 'labels' must be a comma-separated string; got {labels!r}"
            )
        out.append({"wav": e["wav"], "labels": labels})
    return out


def write_manifest(path: str, entries: Iterable[Dict[str, str]]) -> None:
    data = [{"wav": e["wav"], "labels": e.get("labels", "")} for e in entries]
    _atomic_write(path, json.dumps({"data": data}, indent=1))


def split_labels(labels: str) -> List[str]:
    return [t.strip() for t in labels.split(",") if t.strip()]


def read_label_csv(path: str) -> Tuple[List[str], List[str]]:
    """(mids, display names) ordered by class index, from ``index,mid,display_name``."""
    if not os.path.isfile(path):
        raise MissingFileError(
            f"DATASETS.AUDIO.LABEL_CSV '{path}' does not exist (expected the class-label CSV index,mid,display_name)."
        )
    with open(path, "r", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0][:3]] != ["index", "mid", "display_name"]:
        raise ManifestError(
            f"Label CSV '{path}' must start with the header 'index,mid,display_name'; "
            f"got {rows[0] if rows else 'an empty file'}."
        )
    by_index: Dict[int, Tuple[str, str]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < 3:
            raise ManifestError(f"Label CSV '{path}' line {line}: expected 3 columns, got {row}.")
        try:
            idx = int(row[0])
        except ValueError:
            raise ManifestError(f"Label CSV '{path}' line {line}: index '{row[0]}' is not an integer.") from None
        if idx in by_index:
            raise ManifestError(f"Label CSV '{path}' line {line}: index {idx} appears twice.")
        by_index[idx] = (row[1].strip(), ",".join(row[2:]).strip())
    if sorted(by_index) != list(range(len(by_index))):
        raise ManifestError(f"Label CSV '{path}': indices must be 0..{len(by_index) - 1} without gaps.")
    mids = [by_index[i][0] for i in range(len(by_index))]
    if len(set(mids)) != len(mids):
        raise ManifestError(f"Label CSV '{path}': a mid appears twice.")
    return mids, [by_index[i][1] for i in range(len(by_index))]


def write_label_csv(path: str, mids: Sequence[str], names: Sequence[str]) -> None:
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["index", "mid", "display_name"])
    for i, (m, n) in enumerate(zip(mids, names)):
        # A bare CR would go unquoted with a "\n" terminator and split the row on reading back:
        # line breaks inside a display name become spaces.
        w.writerow([i, m, re.sub(r"[\r\n]+", " ", str(n))])
    _atomic_write(path, buf.getvalue())


def read_esc50_meta(root: str) -> List[Dict[str, object]]:
    """Rows of ``<root>/meta/esc50.csv`` as dicts with filename, fold, target, category."""
    path = os.path.join(root, "meta", "esc50.csv")
    if not os.path.isfile(path):
        raise MissingFileError(
            f"ESC-50 metadata '{path}' does not exist; DATASETS.AUDIO.ESC50_ROOT must be the "
            "folder holding meta/esc50.csv and audio/."
        )
    with open(path, "r", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"filename", "fold", "target", "category"} - set(reader.fieldnames or [])
        if missing:
            raise ManifestError(f"ESC-50 metadata '{path}' lacks columns {sorted(missing)}.")
        rows = []
        for line, r in enumerate(reader, start=2):
            try:
                fold, target = int(r["fold"]), int(r["target"])
            except ValueError:
                raise ManifestError(f"'{path}' line {line}: fold/target must be integers: {r}") from None
            if not 1 <= fold <= ESC50_NUM_FOLDS or not 0 <= target < ESC50_NUM_CLASSES:
                raise ManifestError(f"'{path}' line {line}: fold must be 1-5 and target 0-49: {r}")
            rows.append({**r, "fold": fold, "target": target})
    return rows


def write_esc50_meta(root: str, rows: Sequence[Dict[str, object]]) -> None:
    import io

    if not rows:
        raise ValueError("write_esc50_meta: no rows to write.")
    fields = list(rows[0].keys())
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    _atomic_write(os.path.join(root, "meta", "esc50.csv"), buf.getvalue())


def esc50_classes(rows: Sequence[Dict[str, object]]) -> List[str]:
    """Category name of each target 0..49 (``<target>`` when a class has no row)."""
    names = {int(r["target"]): str(r["category"]) for r in rows}
    return [names.get(t, str(t)) for t in range(ESC50_NUM_CLASSES)]


def list_audio_files(root: str, extensions: Sequence[str] = DEFAULT_EXTENSIONS) -> List[str]:
    """Every file under ``root`` (recursively, following links) whose lower-cased extension
    is in ``extensions``, sorted for a stable order."""
    if not os.path.isdir(root):
        raise MissingFileError(f"Audio folder '{root}' does not exist or is not a directory.")
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        out.extend(os.path.join(dirpath, n) for n in sorted(filenames) if n.lower().endswith(exts))
    return out


def read_weights(path: str, expected: int) -> np.ndarray:
    """Per-clip sampling weights (one number per line, AST ``*_weight.csv``)."""
    if not os.path.isfile(path):
        raise MissingFileError(
            f"DATASETS.AUDIO.TRAIN_WEIGHTS '{path}' does not exist (expected one weight per clip "
            "of the train manifest)."
        )
    w = np.atleast_1d(np.loadtxt(path, delimiter=",", dtype=np.float64))
    if w.ndim != 1 or len(w) != expected:
        raise ManifestError(
            f"Weight file '{path}' has {w.size} values; the manifest has {expected} clips "
            "(one weight per clip, in manifest order)."
        )
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ManifestError(f"Weight file '{path}': weights must be finite, >= 0 and not all 0.")
    return w


def write_weights(path: str, weights: Sequence[float]) -> None:
    _atomic_write(path, "".join(f"{float(w):.9g}\n" for w in weights))


def _atomic_write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
