"""Clip conversion and fbank statistics for the data tools (tools/prepare_audio.py,
tools/compute_audio_stats.py). Module-level functions, so process pools can pickle them."""

import os
from typing import Optional, Tuple

import numpy as np
import soundfile as sf

from .features import AudioDecodeError, FbankParams, compute_fbank, load_waveform

_SUBTYPES = {"wav": "PCM_16", "flac": "PCM_16"}
OUTPUT_FORMATS = tuple(sorted(_SUBTYPES))

# A conversion job: (source path, destination path, sample rate, overwrite).
ConvertJob = Tuple[str, str, int, bool]
# Fbank sums of one clip: (sum, sum of squares, frames used, readable).
ClipSums = Tuple[float, float, int, bool]


def init_worker() -> None:
    """Process-pool initializer: one intra-op thread per worker process."""
    import torch

    torch.set_num_threads(1)


def convert_clip(job: ConvertJob) -> Tuple[str, Optional[str]]:
    """Decode, mix down to mono, resample and write one clip (WAV/FLAC by ``dst``'s
    extension). Returns ``(dst, None)`` or ``(dst, error message)``; never raises."""
    src, dst, sample_rate, overwrite = job
    if not overwrite and os.path.isfile(dst):
        try:
            if sf.info(dst).samplerate == sample_rate:
                return dst, None
        except Exception:  # a broken earlier output: convert again
            pass
    fmt = os.path.splitext(dst)[1][1:].lower()
    if fmt not in _SUBTYPES:
        return dst, f"unsupported output format '.{fmt}' (use one of {OUTPUT_FORMATS})"
    try:
        wav = load_waveform(src, sample_rate)[0].numpy()
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        tmp = f"{dst}.tmp{os.getpid()}.{fmt}"
        # Resampling can overshoot [-1, 1] a little; PCM output must not wrap around.
        sf.write(tmp, np.clip(wav, -1.0, 1.0), sample_rate, subtype=_SUBTYPES[fmt], format=fmt.upper())
        os.replace(tmp, dst)
    except Exception as e:  # one bad clip never stops a preparation run
        return dst, f"{type(e).__name__}: {e}"
    return dst, None


def clip_fbank_sums(job: Tuple[str, FbankParams, int]) -> ClipSums:
    """Sum and sum of squares (float64) of a clip's fbank over its first ``target_length``
    frames, as the eval-mode input before padding and normalisation."""
    path, params, target_length = job
    try:
        fb = compute_fbank(load_waveform(path, params.sample_rate), params)[:target_length].double()
    except (AudioDecodeError, RuntimeError, ValueError, OSError):
        return 0.0, 0.0, 0, False
    return float(fb.sum()), float((fb * fb).sum()), int(fb.shape[0]), True
