"""The "audio" SAMPLE_DECODER: one WebDataset sample (compressed clip + JSON labels) -> the same
item an :class:`~bridle_audio.dataset.AudioClipDataset` gives for the clip's file.

Sample fields (written by ``tools/make_shards.py`` / ``tools/prepare_audio.py --shards``):
``flac`` (or ``wav`` / ``ogg`` / ``mp3`` ... any format soundfile reads) and ``json`` =
``{"index": int, "labels": [class indices]}`` (multi-label) or ``{"index": int, "label": int}``;
the shard index's ``meta`` gives ``num_classes`` and ``multi_label``.

The pipeline is the clip dataset's: decode -> mono -> 16 kHz -> [random window of a long clip]
-> [roll + gain] -> [mixup] -> kaldi fbank -> pad / crop -> [SpecAugment] -> normalise. In a
stream there is no random access, so waveform mixup ("finetune") mixes with the previous clip
decoded by the same loader worker.
"""
import io
import math
from typing import Dict, List, Optional

import torch

from bridle.data.robust import check_mode
from bridle.data.shards import sample_payload
from bridle.registry import SAMPLE_DECODER

from .augment import mix_waveforms, roll_and_gain, sample_beta
from .dataset import ClipPipeline
from .features import AudioDecodeError, compute_fbank, load_waveform

#: Field names (file extensions) of the clip in a sample, in the order they are looked for.
AUDIO_FIELDS = ("flac", "wav", "ogg", "oga", "opus", "mp3", "aiff", "aif")


class AudioSampleDecoder(ClipPipeline):
    def __init__(self, cfg, mode: str, meta: dict) -> None:
        check_mode(mode, "SAMPLE_DECODER 'audio'")
        # the clip dataset's settings; with FBANK_ON_DEVICE the "shards" dataset exposes
        # device_transform, which the trainers apply to whole batches on the device
        self._init_pipeline(cfg, mode)
        self.num_classes = int(meta.get("num_classes", 0) or 0)
        self.multi_label = bool(meta.get("multi_label", False))
        self.soft_labels = self.num_classes > 0 and (self.multi_label or self.mixup_prob > 0)
        self._previous = None  # (encoded clip, labels) of the last sample: the mixup partner

    # ------------------------------------------------------------------ pieces
    def _labels(self, meta: dict) -> Optional[List[int]]:
        if "labels" in meta:
            return [int(c) for c in meta["labels"]]
        if "label" in meta:
            return [int(meta["label"])]
        return None

    def _label_tensor(self, idx: List[int], key: str) -> torch.Tensor:
        if self.num_classes and any(not 0 <= c < self.num_classes for c in idx):
            raise ValueError(f"sample {key}: class index outside [0, {self.num_classes})")
        if not self.soft_labels:
            if len(idx) != 1:
                raise ValueError(f"sample {key}: {len(idx)} labels for a single-label decoder")
            return torch.tensor(idx[0], dtype=torch.long)
        y = torch.zeros(self.num_classes, dtype=torch.float32)
        y[idx] = 1.0
        return y

    def _waveform(self, data: bytes, key: str) -> torch.Tensor:
        try:
            wav = None
            if self.random_crop:
                import soundfile as sf

                info = sf.info(io.BytesIO(data))
                sr, frames = int(info.samplerate), int(info.frames)
                need = math.ceil(self.params.samples_for_frames(self.target_length) * sr / self.params.sample_rate)
                need += sr // 10
                if frames > 2 * need:
                    start = int(torch.randint(frames - need + 1, ()))
                    wav = load_waveform(io.BytesIO(data), self.params.sample_rate, start=start, num_frames=need)
            if wav is None:
                wav = load_waveform(io.BytesIO(data), self.params.sample_rate)
        except AudioDecodeError as e:
            raise AudioDecodeError(f"sample {key}: {e}") from None
        except RuntimeError as e:  # soundfile errors on unreadable bytes
            raise AudioDecodeError(f"sample {key}: cannot decode audio: {e}") from None
        if self.roll or self.gain:
            wav = roll_and_gain(wav - wav.mean(), self.roll, self.gain, self.gain_beta)
        return wav

    # ------------------------------------------------------------------ one sample
    def __call__(self, sample: Dict[str, bytes]) -> dict:
        key, ext, meta = sample_payload(sample, AUDIO_FIELDS, "audio", AudioDecodeError)
        idx = self._labels(meta) if self.num_classes else None
        mix = self.mixup_prob > 0 and float(torch.rand(())) < self.mixup_prob and self._previous is not None
        label = self._label_tensor(idx, key) if idx is not None else None
        wav = self._waveform(sample[ext], key)
        if mix:
            other_data, other_idx = self._previous
            try:
                other = self._waveform(other_data, f"{key} (mixup partner)")
            except AudioDecodeError:
                other = None
            if other is not None:
                lam = sample_beta(self.mixup_alpha)
                wav = mix_waveforms(wav, other, lam)
                if label is not None and other_idx is not None:
                    label = lam * label + (1.0 - lam) * self._label_tensor(other_idx, key)
        if self.mixup_prob > 0:
            self._previous = (sample[ext], idx)
        index = torch.tensor(int(meta.get("index", -1)), dtype=torch.long)
        if self.device_transform is not None:
            return self._waveform_item(wav, index, label)
        return self._fbank_item(compute_fbank(wav, self.params), index, label)


@SAMPLE_DECODER.register(name="audio")
def build_audio_decoder(cfg, mode: str, meta: dict) -> AudioSampleDecoder:
    return AudioSampleDecoder(cfg, mode, meta)
