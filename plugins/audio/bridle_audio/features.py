"""Waveform decoding and log-mel features.

The feature recipe is fixed by the checkpoints we must stay compatible with (the authors'
dataset.py, AudiosetDataset._wav2fbank, github.com/HoangNguyenM/bridle): 16 kHz mono,
waveform mean removed, kaldi fbank (hanning, htk_compat, no dither, no energy), zero padding in
the log-mel domain *before* normalisation, crop from the first frame in evaluation, and
``(x - mean) / (2 * std)``.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import soundfile as sf
import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as AF


class AudioDecodeError(RuntimeError):
    """A clip that cannot be decoded (missing, corrupt, empty); the message names the file."""


@dataclass(frozen=True)
class FbankParams:
    sample_rate: int = 16000
    num_mel_bins: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0

    @classmethod
    def from_config(cls, cfg) -> "FbankParams":
        a = cfg.INPUT.AUDIO
        return cls(int(a.SAMPLE_RATE), int(a.NUM_MEL_BINS), float(a.FRAME_LENGTH_MS), float(a.FRAME_SHIFT_MS))

    @property
    def window_samples(self) -> int:
        return int(round(self.sample_rate * self.frame_length_ms / 1000.0))

    @property
    def shift_samples(self) -> int:
        return int(round(self.sample_rate * self.frame_shift_ms / 1000.0))

    def num_frames(self, num_samples: int) -> int:
        """Frames kaldi's fbank (snip_edges) yields for ``num_samples`` samples."""
        if num_samples < self.window_samples:
            return 1  # compute_fbank pads such clips to one window
        return 1 + (num_samples - self.window_samples) // self.shift_samples

    def samples_for_frames(self, num_frames: int) -> int:
        return (num_frames - 1) * self.shift_samples + self.window_samples

    def key(self) -> str:
        return f"{self.sample_rate}-{self.num_mel_bins}-{self.frame_length_ms}-{self.frame_shift_ms}"


def _raise_if_missing(path, exc: BaseException) -> None:
    """libsndfile reports a missing file as "System error.": say what it is."""
    import os

    if isinstance(path, (str, os.PathLike)) and not os.path.exists(path):
        raise AudioDecodeError(f"Audio file '{os.fspath(path)}' does not exist.") from exc


def clip_info(path: str) -> Tuple[int, int]:
    """(sample rate, number of frames) of a clip without decoding it."""
    try:
        info = sf.info(path)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / OSError
        _raise_if_missing(path, e)
        raise AudioDecodeError(f"Cannot read audio file '{path}': {e}") from e
    return int(info.samplerate), int(info.frames)


#: Largest absolute sample value accepted: decoded PCM lies in [-1, 1]; float files a little
#: above full scale are fine, values like 1e30 are corrupt data that would poison training.
MAX_ABS_AMPLITUDE = 100.0


def _wav_truncation(path: str) -> Optional[Tuple[int, int]]:
    """(bytes the WAV header declares for its data chunk, bytes present) when a RIFF/WAVE file
    holds fewer samples than its header says, else None (also for other formats, and for
    streaming headers that leave the size unknown)."""
    import contextlib
    import io
    import os
    import struct

    try:
        if isinstance(path, (str, os.PathLike)):
            size, opened = os.path.getsize(path), open(path, "rb")
        elif hasattr(path, "getbuffer"):  # an in-memory file (e.g. a shard member)
            size, opened = len(path.getbuffer()), contextlib.nullcontext(io.BytesIO(path.getbuffer()))
        else:
            return None
        with opened as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                cid, csize = struct.unpack("<4sI", f.read(8))
                if cid == b"data":
                    present = size - (pos + 8)
                    if csize in (0, 0xFFFFFFFF) or csize <= present:
                        return None
                    return csize, present
                pos += 8 + csize + (csize & 1)
    except (OSError, struct.error):
        return None
    return None


def load_waveform(
    path: str,
    sample_rate: int = 16000,
    start: int = 0,
    num_frames: int = -1,
) -> torch.Tensor:
    """Decode ``path`` with soundfile, mix down to mono and resample to ``sample_rate``.

    ``start`` / ``num_frames`` select a segment in the file's *own* sample rate (``-1`` = to
    the end). Returns float32 ``[1, S]``. Raises :class:`AudioDecodeError` naming the file for
    an undecodable, empty or truncated file (a WAV with fewer samples than its header says) and
    for samples that are non-finite or beyond :data:`MAX_ABS_AMPLITUDE`.
    """
    truncated = _wav_truncation(path)
    if truncated is not None:
        raise AudioDecodeError(
            f"Audio file '{path}' is truncated: its header declares {truncated[0]} data bytes, "
            f"the file holds {truncated[1]}."
        )
    try:
        data, sr = sf.read(path, start=start, frames=num_frames, dtype="float32", always_2d=True)
    except Exception as e:
        _raise_if_missing(path, e)
        raise AudioDecodeError(f"Cannot decode audio file '{path}': {type(e).__name__}: {e}") from e
    if data.shape[0] == 0:
        raise AudioDecodeError(f"Audio file '{path}' contains no samples.")
    if not np.isfinite(data).all():
        raise AudioDecodeError(f"Audio file '{path}' decodes to NaN/Inf samples.")
    peak = float(np.abs(data).max())
    if peak > MAX_ABS_AMPLITUDE:
        raise AudioDecodeError(
            f"Audio file '{path}' has samples of absolute value {peak:.3g} (> {MAX_ABS_AMPLITUDE}); "
            "expected audio scaled to about [-1, 1]."
        )
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))[None]
    return resample(wav, sr, sample_rate)


def resample(wav: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    if int(orig_rate) == int(new_rate):
        return wav
    return AF.resample(wav, int(orig_rate), int(new_rate))


def compute_fbank(wav: torch.Tensor, params: FbankParams = FbankParams()) -> torch.Tensor:
    """Log-mel fbank ``[frames, mel]`` of a mono waveform ``[1, S]`` (or ``[S]``) at
    ``params.sample_rate``. The waveform's mean is removed first; a clip shorter than one
    window is zero-padded to one window (kaldi needs at least one full frame)."""
    if wav.dim() == 1:
        wav = wav[None]
    if wav.dim() != 2 or wav.shape[0] != 1:
        raise ValueError(f"compute_fbank expects a mono waveform [1, S]; got {list(wav.shape)}.")
    if wav.shape[1] == 0:
        raise ValueError("compute_fbank got an empty waveform.")
    wav = wav.float()
    wav = wav - wav.mean()
    if wav.shape[1] < params.window_samples:
        wav = torch.nn.functional.pad(wav, (0, params.window_samples - wav.shape[1]))
    return kaldi.fbank(
        wav,
        sample_frequency=params.sample_rate,
        num_mel_bins=params.num_mel_bins,
        frame_length=params.frame_length_ms,
        frame_shift=params.frame_shift_ms,
        window_type="hanning",
        htk_compat=True,
        use_energy=False,
        dither=0.0,
    )


def fit_length(fbank: torch.Tensor, target_length: int, offset: int = 0) -> torch.Tensor:
    """Zero-pad (at the end) or crop ``[frames, mel]`` to ``target_length`` frames, the crop
    starting at frame ``offset``. Padding happens in the log-mel domain, before normalisation."""
    n = fbank.shape[0]
    if n < target_length:
        return torch.nn.functional.pad(fbank, (0, 0, 0, target_length - n))
    offset = max(0, min(int(offset), n - target_length))
    return fbank[offset : offset + target_length]


def normalize(fbank: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """AudioMAE/AST normalisation ``(x - mean) / (2 * std)``."""
    return (fbank - mean) / (2.0 * std)
