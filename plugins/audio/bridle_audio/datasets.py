"""DATASET registry entries of the audio plugin: ``fn(cfg, split, mode) -> AudioClipDataset``.

- ``audioset_manifest``: AudioMAE JSON manifests + class-label CSV -> multi-hot labels.
- ``esc50``: ESC-50's ``meta/esc50.csv``; DATASETS.AUDIO.ESC50_FOLD is the held-out fold.
- ``audio_folder``: every clip under a folder, unlabeled (pretraining).
"""

import logging
import os

from bridle.config.config import ConfigValueError
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
logger = logging.getLogger("bridle_audio")


def _labels_needed(cfg, split: str, mode: str) -> bool:
    """Whether this dataset uses labels: labelled modes do; pretraining only to weigh clips by
    label frequency (DATALOADER.SAMPLER_TRAIN "WeightedSampler" without TRAIN_WEIGHTS)."""
    if mode in _LABELLED_MODES:
        return True
    return (
        split == "train" and cfg.DATALOADER.SAMPLER_TRAIN == "WeightedSampler" and not cfg.DATASETS.AUDIO.TRAIN_WEIGHTS
    )


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
        raise ConfigValueError(
            f"Dataset 'audioset_manifest', split '{split}': DATASETS.AUDIO.{key} is empty; set it "
            "to an AudioMAE JSON manifest (tools/prepare_audio.py writes them)."
        )
    entries = read_manifest(manifest, key=f"DATASETS.AUDIO.{key}")
    if not entries:
        raise ConfigValueError(f"DATASETS.AUDIO.{key} '{manifest}' has no entries; expected at least one clip.")
    root = str(d.ROOT) or os.path.dirname(os.path.abspath(manifest))
    paths = [e["wav"] if os.path.isabs(e["wav"]) else os.path.join(root, e["wav"]) for e in entries]

    labels, num_classes = None, 0
    label_csv = str(d.LABEL_CSV)
    if label_csv and not os.path.isfile(label_csv) and not _labels_needed(cfg, split, mode):
        # Pretraining reads no labels: a LABEL_CSV inherited from a base config need not exist.
        logger.info(f"DATASETS.AUDIO.LABEL_CSV '{label_csv}' does not exist; mode '{mode}' uses no labels: ignored.")
        label_csv = ""
    if label_csv:
        mids, _ = read_label_csv(label_csv)
        index_of = {m: i for i, m in enumerate(mids)}
        labels = []
        for i, e in enumerate(entries):
            ids = split_labels(e["labels"])
            unknown = [m for m in ids if m not in index_of]
            if unknown:
                raise ConfigValueError(
                    f"Manifest '{manifest}' entry {i} ('{e['wav']}') has label(s) {unknown} that are "
                    f"not in the label CSV '{d.LABEL_CSV}' (DATASETS.AUDIO.LABEL_CSV)."
                )
            labels.append(sorted({index_of[m] for m in ids}))
        num_classes = len(mids)
    elif _labels_needed(cfg, split, mode) and not (mode == "eval" and not any(e["labels"] for e in entries)):
        # (an unlabelled manifest is fine in "eval" mode, e.g. for tools/tokenize_dataset.py)
        why = (
            f"mode '{mode}'"
            if mode in _LABELLED_MODES
            else (
                "DATALOADER.SAMPLER_TRAIN 'WeightedSampler' "
                "(weights from label counts; or set DATASETS.AUDIO.TRAIN_WEIGHTS)"
            )
        )
        raise ConfigValueError(
            f"Dataset 'audioset_manifest' in {why} needs labels: set DATASETS.AUDIO.LABEL_CSV "
            "to the class-label CSV (index,mid,display_name)."
        )

    weights = None
    if split == "train" and d.TRAIN_WEIGHTS:
        weights = read_weights(str(d.TRAIN_WEIGHTS), len(entries))
    return AudioClipDataset(
        cfg,
        paths,
        mode,
        labels=labels,
        num_classes=num_classes,
        multi_label=True,
        weights=weights,
        name=f"audioset_manifest:{split}",
        source=f"manifest '{manifest}'",
    )


@DATASET.register(name="esc50")
def build_esc50(cfg, split: str, mode: str) -> AudioClipDataset:
    d = cfg.DATASETS.AUDIO
    _check_split("esc50", split, mode, ("train", "val", "test"))
    if not d.ESC50_ROOT:
        raise ConfigValueError("Dataset 'esc50': DATASETS.AUDIO.ESC50_ROOT is empty (the folder with meta/esc50.csv).")
    fold = int(d.ESC50_FOLD)
    if not 1 <= fold <= ESC50_NUM_FOLDS:
        raise ConfigValueError(f"DATASETS.AUDIO.ESC50_FOLD must be 1-{ESC50_NUM_FOLDS}; got {fold}.")
    rows = read_esc50_meta(str(d.ESC50_ROOT))
    keep = [r for r in rows if (r["fold"] != fold) == (split == "train")]
    if not keep:
        raise ConfigValueError(
            f"Dataset 'esc50', split '{split}': no clips with fold {'!=' if split == 'train' else '=='} "
            f"{fold} in '{os.path.join(d.ESC50_ROOT, 'meta', 'esc50.csv')}'."
        )
    paths = [os.path.join(str(d.ESC50_ROOT), "audio", str(r["filename"])) for r in keep]
    return AudioClipDataset(
        cfg,
        paths,
        mode,
        labels=[r["target"] for r in keep],
        num_classes=ESC50_NUM_CLASSES,
        multi_label=False,
        name=f"esc50:fold{fold}:{split}",
    )


@DATASET.register(name="audio_folder")
def build_audio_folder(cfg, split: str, mode: str) -> AudioClipDataset:
    d = cfg.DATASETS.AUDIO
    _check_split("audio_folder", split, mode, ("train",))
    if mode in ("finetune", "linear_probe"):
        raise ConfigValueError(f"Dataset 'audio_folder' is unlabeled; it cannot be used in mode '{mode}'.")
    if not d.FOLDER_ROOT:
        raise ConfigValueError("Dataset 'audio_folder': DATASETS.AUDIO.FOLDER_ROOT is empty.")
    paths = list_audio_files(str(d.FOLDER_ROOT), list(d.FOLDER_EXTENSIONS))
    if not paths:
        raise ConfigValueError(
            f"Dataset 'audio_folder': no files with extensions {list(d.FOLDER_EXTENSIONS)} under "
            f"'{d.FOLDER_ROOT}' (DATASETS.AUDIO.FOLDER_ROOT / FOLDER_EXTENSIONS)."
        )
    return AudioClipDataset(cfg, paths, mode, name="audio_folder")
