"""DATASET registry entries of the audio plugin: ``fn(cfg, split, mode) -> AudioClipDataset``.

- ``audioset_manifest``: AudioMAE JSON manifests + class-label CSV -> multi-hot labels.
- ``esc50``: ESC-50's ``meta/esc50.csv``; DATASETS.AUDIO.ESC50_FOLD is the held-out fold.
- ``audio_folder``: every clip under a folder, unlabeled (pretraining).
"""
import os

from bridle.data.robust import check_mode
from bridle.registry import DATASET

from .dataset import AudioClipDataset
from .manifest import (
    ESC50_NUM_CLASSES,
    ESC50_NUM_FOLDS,
    list_audio_files,
    read_esc50_meta,
    read_label_csv,
    read_manifest,
    read_weights,
    split_labels,
)

_MANIFEST_KEYS = {"train": "TRAIN_MANIFEST", "val": "VAL_MANIFEST", "test": "TEST_MANIFEST"}
_LABELLED_MODES = ("finetune", "linear_probe", "eval")


def _check_split(dataset: str, split: str, mode: str, allowed) -> None:
    check_mode(mode, f"Dataset '{dataset}'")
    if split not in allowed:
        raise ValueError(f"Dataset '{dataset}': split must be one of {list(allowed)}; got '{split}'.")


@DATASET.register(name="audioset_manifest")
def build_audioset_manifest(cfg, split: str, mode: str) -> AudioClipDataset:
    d = cfg.DATASETS.AUDIO
    _check_split("audioset_manifest", split, mode, _MANIFEST_KEYS)
    key = _MANIFEST_KEYS[split]
    manifest = str(d[key])
    if not manifest:
        raise ValueError(
            f"Dataset 'audioset_manifest', split '{split}': DATASETS.AUDIO.{key} is empty; set it "
            "to an AudioMAE JSON manifest (tools/prepare_audio.py writes them)."
        )
    entries = read_manifest(manifest)
    if not entries:
        raise ValueError(f"Manifest '{manifest}' (DATASETS.AUDIO.{key}) has no entries.")
    root = str(d.ROOT) or os.path.dirname(os.path.abspath(manifest))
    paths = [e["wav"] if os.path.isabs(e["wav"]) else os.path.join(root, e["wav"]) for e in entries]

    labels, num_classes = None, 0
    if d.LABEL_CSV:
        mids, _ = read_label_csv(str(d.LABEL_CSV))
        index_of = {m: i for i, m in enumerate(mids)}
        labels = []
        for i, e in enumerate(entries):
            ids = split_labels(e["labels"])
            unknown = [m for m in ids if m not in index_of]
            if unknown:
                raise ValueError(
                    f"Manifest '{manifest}' entry {i} ('{e['wav']}') has label(s) {unknown} that are "
                    f"not in the label CSV '{d.LABEL_CSV}' (DATASETS.AUDIO.LABEL_CSV)."
                )
            labels.append(sorted({index_of[m] for m in ids}))
        num_classes = len(mids)
    elif mode in _LABELLED_MODES and not (mode == "eval" and not any(e["labels"] for e in entries)):
        # (an unlabelled manifest is fine in "eval" mode, e.g. for tools/tokenize_dataset.py)
        raise ValueError(
            f"Dataset 'audioset_manifest' in mode '{mode}' needs labels: set DATASETS.AUDIO.LABEL_CSV "
            "to the class-label CSV (index,mid,display_name)."
        )

    weights = None
    if split == "train" and d.TRAIN_WEIGHTS:
        weights = read_weights(str(d.TRAIN_WEIGHTS), len(entries))
    return AudioClipDataset(
        cfg, paths, mode, labels=labels, num_classes=num_classes, multi_label=True,
        weights=weights, name=f"audioset_manifest:{split}",
    )


@DATASET.register(name="esc50")
def build_esc50(cfg, split: str, mode: str) -> AudioClipDataset:
    d = cfg.DATASETS.AUDIO
    _check_split("esc50", split, mode, ("train", "val", "test"))
    if not d.ESC50_ROOT:
        raise ValueError("Dataset 'esc50': DATASETS.AUDIO.ESC50_ROOT is empty (the folder with meta/esc50.csv).")
    fold = int(d.ESC50_FOLD)
    if not 1 <= fold <= ESC50_NUM_FOLDS:
        raise ValueError(f"DATASETS.AUDIO.ESC50_FOLD must be 1-{ESC50_NUM_FOLDS}; got {fold}.")
    rows = read_esc50_meta(str(d.ESC50_ROOT))
    keep = [r for r in rows if (r["fold"] != fold) == (split == "train")]
    if not keep:
        raise ValueError(
            f"Dataset 'esc50', split '{split}': no clips with fold {'!=' if split == 'train' else '=='} "
            f"{fold} in '{os.path.join(d.ESC50_ROOT, 'meta', 'esc50.csv')}'."
        )
    paths = [os.path.join(str(d.ESC50_ROOT), "audio", str(r["filename"])) for r in keep]
    return AudioClipDataset(
        cfg, paths, mode, labels=[r["target"] for r in keep], num_classes=ESC50_NUM_CLASSES,
        multi_label=False, name=f"esc50:fold{fold}:{split}",
    )


@DATASET.register(name="audio_folder")
def build_audio_folder(cfg, split: str, mode: str) -> AudioClipDataset:
    d = cfg.DATASETS.AUDIO
    _check_split("audio_folder", split, mode, ("train",))
    if mode in ("finetune", "linear_probe"):
        raise ValueError(f"Dataset 'audio_folder' is unlabeled; it cannot be used in mode '{mode}'.")
    if not d.FOLDER_ROOT:
        raise ValueError("Dataset 'audio_folder': DATASETS.AUDIO.FOLDER_ROOT is empty.")
    paths = list_audio_files(str(d.FOLDER_ROOT), list(d.FOLDER_EXTENSIONS))
    if not paths:
        raise ValueError(
            f"Dataset 'audio_folder': no files with extensions {list(d.FOLDER_EXTENSIONS)} under "
            f"'{d.FOLDER_ROOT}' (DATASETS.AUDIO.FOLDER_ROOT / FOLDER_EXTENSIONS)."
        )
    return AudioClipDataset(cfg, paths, mode, name="audio_folder")
