"""``AudioClipDataset``: a list of clips (+ optional labels) -> model inputs ``[frames, mel]``.

Per item: decode (soundfile) -> mono -> 16 kHz -> [roll + gain] -> [waveform mixup] -> mean
removal + kaldi fbank -> pad / crop to TARGET_LENGTH frames -> [SpecAugment] -> normalise.
Bracketed steps depend on ``mode``: roll + gain in every training mode (pretrain, finetune,
linear_probe), mixup and SpecAugment in "finetune" only, nothing in "eval".
"""

import hashlib
import math
import os
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from bridle.data.robust import DATASET_MODES, RobustItemsMixin, check_mode
from bridle.data.weighted_sampler import label_frequency_weights

from .augment import SpecAugment, mix_waveforms, roll_and_gain, sample_beta
from .features import (
    AudioDecodeError,
    FbankParams,
    clip_info,
    compute_fbank,
    fit_length,
    load_waveform,
    normalize,
)

MODES = DATASET_MODES


class _PackedStrings:
    """Many strings in two numpy arrays: no per-item Python objects, so forked DataLoader
    workers do not copy them page by page through reference counting."""

    def __init__(self, strings: Sequence[str]) -> None:
        encoded = [s.encode("utf-8") for s in strings]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=self._offsets[1:])
        self._buf = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self._buf[self._offsets[i] : self._offsets[i + 1]].tobytes().decode("utf-8")


class ClipPipeline:
    """The per-clip settings of ``INPUT.AUDIO`` for one ``mode`` and the steps from a decoded
    waveform to an item, shared by :class:`AudioClipDataset` and the shards decoder
    (:mod:`bridle_audio.shards`), so both layouts give identical items."""

    def _init_pipeline(self, cfg, mode: str, normalize_input: bool = True) -> None:
        a = cfg.INPUT.AUDIO
        self.mode = mode
        self.params = FbankParams.from_config(cfg)
        self.target_length = int(a.TARGET_LENGTH)
        if self.target_length <= 0:
            raise ValueError(f"INPUT.AUDIO.TARGET_LENGTH must be > 0; got {self.target_length}.")
        self.norm_mean, self.norm_std = float(a.NORM_MEAN), float(a.NORM_STD)
        if self.norm_std <= 0:
            raise ValueError(f"INPUT.AUDIO.NORM_STD must be > 0; got {self.norm_std}.")
        self.normalize_input = normalize_input
        training = mode != "eval"
        finetune = mode == "finetune"
        self.random_crop = training and bool(a.TRAIN_RANDOM_CROP)
        self.roll = training and bool(a.ROLL)
        self.gain = training and bool(a.GAIN)
        self.gain_beta = float(a.GAIN_BETA)
        if not 0.0 <= float(a.MIXUP_PROB) <= 1.0:
            raise ValueError(f"INPUT.AUDIO.MIXUP_PROB must be in [0, 1]; got {a.MIXUP_PROB}.")
        self.mixup_prob = float(a.MIXUP_PROB) if finetune else 0.0
        self.mixup_alpha = float(a.MIXUP_ALPHA)
        self.spec_augment = SpecAugment(int(a.FREQ_MASK), int(a.TIME_MASK)) if finetune else None
        # DATASETS.AUDIO.FBANK_ON_DEVICE: items are waveforms, the core applies device_transform
        # (batched fbank + padding + SpecAugment + normalisation on the training device)
        self.device_transform = None
        if bool(getattr(cfg.DATASETS.AUDIO, "FBANK_ON_DEVICE", False)) and normalize_input:
            from .device_fbank import DeviceFbank

            self.device_transform = DeviceFbank(cfg, mode)

    def _fbank_item(self, fbank: torch.Tensor, index: int, label) -> Dict[str, torch.Tensor]:
        """fbank [frames, mel] -> the item: [random (training) | start] crop or zero padding to
        TARGET_LENGTH frames in the log-mel domain -> [SpecAugment] -> normalise."""
        offset = 0
        if self.random_crop and fbank.shape[0] > self.target_length:
            offset = int(torch.randint(fbank.shape[0] - self.target_length + 1, ()))
        x = fit_length(fbank, self.target_length, offset)
        if self.spec_augment is not None:
            x = self.spec_augment(x)
        if self.normalize_input:
            x = normalize(x, self.norm_mean, self.norm_std)
        item = {"input": x.contiguous(), "index": torch.tensor(int(index), dtype=torch.long)}
        if label is not None:
            item["label"] = label
        return item

    def _waveform_item(self, wav: torch.Tensor, index: int, label) -> Dict[str, torch.Tensor]:
        """FBANK_ON_DEVICE: the samples of the TARGET_LENGTH frames the CPU path would keep (the
        same random frame offset in training), zero-padded to a fixed length, and their count."""
        p = self.params
        need = p.samples_for_frames(self.target_length)
        frames = p.num_frames(wav.shape[1])
        offset = 0
        if self.random_crop and frames > self.target_length:
            offset = int(torch.randint(frames - self.target_length + 1, ()))
        wav = wav.float()
        wav = wav - wav.mean()  # the whole clip's mean, as compute_fbank (the device does not redo it)
        seg = wav[0, offset * p.shift_samples : offset * p.shift_samples + need]
        item = {
            "input": torch.nn.functional.pad(seg, (0, need - seg.shape[0])).contiguous(),
            "num_samples": torch.tensor(seg.shape[0], dtype=torch.long),
            "index": torch.tensor(int(index), dtype=torch.long),
        }
        if label is not None:
            item["label"] = label
        return item


class AudioClipDataset(ClipPipeline, RobustItemsMixin, Dataset):
    """Clips ``paths`` with optional labels.

    ``labels``: ``None`` (unlabeled), a sequence of class indices (single-label), or a sequence
    of per-clip index sequences (multi-label, ``multi_label=True``). Items are dicts
    ``{"input": float [TARGET_LENGTH, NUM_MEL_BINS], "label": ..., "index": int}`` with
    ``label`` a float multi-hot ``[C]`` (multi-label), a long scalar (single-label), or a float
    one-hot/soft ``[C]`` for single-label data in "finetune" mode with mixup enabled (so mixed
    and unmixed items collate together). Unreadable clips give ``None``, are counted in
    ``num_failed`` / ``failed_keys`` (their paths) and the first one is logged as a warning
    (the core :class:`~bridle.data.robust.RobustItemsMixin`).
    """

    load_errors = (AudioDecodeError,) + RobustItemsMixin.load_errors

    def __init__(
        self,
        cfg,
        paths: Sequence[str],
        mode: str,
        labels: Optional[Sequence[Union[int, Sequence[int]]]] = None,
        num_classes: int = 0,
        multi_label: bool = False,
        weights: Optional[np.ndarray] = None,
        name: str = "audio",
        normalize_input: bool = True,
        source: str = "",
    ) -> None:
        check_mode(mode, f"Dataset '{name}'")
        self.source = str(source)  # e.g. "manifest 'train.json'": named with the entry of an unreadable clip
        if len(paths) == 0:
            raise ValueError(f"Dataset '{name}' has no clips.")
        self.name = name
        self._init_pipeline(cfg, mode, normalize_input)
        # no fbank cache when the features are computed on the device
        self.cache_dir = "" if self.device_transform is not None else str(cfg.DATASETS.AUDIO.FBANK_CACHE_DIR)

        self._paths = _PackedStrings(paths)
        self.num_classes = int(num_classes) if labels is not None else 0
        self.multi_label = bool(multi_label)
        self._labels_flat: Optional[np.ndarray] = None
        self._labels_off: Optional[np.ndarray] = None
        if labels is not None:
            if len(labels) != len(paths):
                raise ValueError(f"Dataset '{name}': {len(labels)} labels for {len(paths)} clips.")
            lists = [list(map(int, x)) for x in labels] if multi_label else [[int(x)] for x in labels]
            self._labels_off = np.zeros(len(lists) + 1, dtype=np.int64)
            np.cumsum([len(x) for x in lists], out=self._labels_off[1:])
            self._labels_flat = np.fromiter((c for x in lists for c in x), dtype=np.int64)
            if self._labels_flat.size and (self._labels_flat.min() < 0 or self._labels_flat.max() >= self.num_classes):
                raise ValueError(f"Dataset '{name}': a class index is outside [0, {self.num_classes}).")
        self._weights = weights
        # Soft single-label targets when some items may be mixed.
        self.soft_labels = labels is not None and (self.multi_label or self.mixup_prob > 0)

    # ------------------------------------------------------------------ metadata
    def __len__(self) -> int:
        return len(self._paths)

    def path(self, index: int) -> str:
        return self._paths[index]

    @property
    def has_labels(self) -> bool:
        return self._labels_flat is not None

    def label_indices(self, index: int) -> List[int]:
        if self._labels_flat is None:
            return []
        return self._labels_flat[self._labels_off[index] : self._labels_off[index + 1]].tolist()

    def all_label_indices(self) -> List[List[int]]:
        return [self.label_indices(i) for i in range(len(self))]

    def sample_weights(self) -> torch.Tensor:
        """Per-clip sampling weights: the weight file if one was given, else
        ``sum over labels of 1 / label frequency``; uniform for unlabeled data."""
        if self._weights is not None:
            return torch.as_tensor(self._weights, dtype=torch.float64)
        if not self.has_labels:
            return torch.ones(len(self), dtype=torch.float64)
        return label_frequency_weights(self.all_label_indices(), self.num_classes)

    def _label_tensor(self, index: int) -> torch.Tensor:
        idx = self.label_indices(index)
        if not self.soft_labels:
            return torch.tensor(idx[0], dtype=torch.long)
        y = torch.zeros(self.num_classes, dtype=torch.float32)
        y[idx] = 1.0
        return y

    # ------------------------------------------------------------------ items
    def __getitem__(self, index: int) -> Optional[Dict[str, torch.Tensor]]:
        index = int(index)
        return self.load_or_none(self.path(index), self._located_item, index)

    def _located_item(self, index: int) -> Dict[str, torch.Tensor]:
        try:
            return self._item(index)
        except AudioDecodeError as e:
            if not self.source:
                raise
            raise AudioDecodeError(f"{str(e).rstrip('.')} ({self.source}, entry {index}).") from e

    def _item(self, index: int) -> Dict[str, torch.Tensor]:
        mix = self.mixup_prob > 0 and float(torch.rand(())) < self.mixup_prob and len(self) > 1
        waveform_aug = self.roll or self.gain or mix
        label = self._label_tensor(index) if self.has_labels else None
        if not waveform_aug and self.cache_dir:
            fbank = self._cached_fbank(index)
        else:
            wav = self._waveform(index)
            if mix:
                partner = int(torch.randint(len(self) - 1, ()))
                partner += partner >= index  # any other clip
                try:
                    other = self._waveform(partner)
                except self.load_errors as e:  # mix with nothing rather than lose this item
                    self.record_failure(self.path(partner), e)
                else:
                    lam = sample_beta(self.mixup_alpha)
                    wav = mix_waveforms(wav, other, lam)
                    if label is not None:
                        label = lam * label + (1.0 - lam) * self._label_tensor(partner)
            if self.device_transform is not None:
                return self._waveform_item(wav, index, label)
            fbank = compute_fbank(wav, self.params)
        return self._fbank_item(fbank, index, label)

    def _waveform(self, index: int) -> torch.Tensor:
        """The clip's waveform at the target rate, with roll + gain in training modes. A clip
        much longer than one item is read only around a random window (random-crop mode)."""
        path = self.path(index)
        wav = None
        if self.random_crop:
            sr, frames = clip_info(path)
            need = math.ceil(self.params.samples_for_frames(self.target_length) * sr / self.params.sample_rate)
            need += sr // 10  # resampling filter margin
            if frames > 2 * need:
                start = int(torch.randint(frames - need + 1, ()))
                wav = load_waveform(path, self.params.sample_rate, start=start, num_frames=need)
        if wav is None:
            wav = load_waveform(path, self.params.sample_rate)
        if self.roll or self.gain:
            wav = roll_and_gain(wav - wav.mean(), self.roll, self.gain, self.gain_beta)
        return wav

    # ------------------------------------------------------------------ fbank cache
    def cache_path(self, index: int) -> str:
        path = os.path.abspath(self.path(index))
        digest = hashlib.sha1(f"{path}|{self.params.key()}".encode("utf-8")).hexdigest()
        return os.path.join(self.cache_dir, digest[:2], digest + ".npy")

    def _cached_fbank(self, index: int) -> torch.Tensor:
        """Un-normalised, un-cropped fbank of the whole clip, from the cache or computed and
        stored there (atomically, so concurrent workers never read a partial file)."""
        cpath = self.cache_path(index)
        if os.path.isfile(cpath):
            try:
                arr = np.load(cpath)
                if arr.ndim == 2 and arr.shape[1] == self.params.num_mel_bins and arr.dtype == np.float32:
                    return torch.from_numpy(arr)
            except (OSError, ValueError):
                pass  # unreadable cache entry: recompute it
        fbank = compute_fbank(load_waveform(self.path(index), self.params.sample_rate), self.params)
        os.makedirs(os.path.dirname(cpath), exist_ok=True)
        tmp = f"{cpath}.{os.getpid()}.tmp.npy"
        np.save(tmp, fbank.numpy().astype(np.float32))
        os.replace(tmp, cpath)
        return fbank
