"""Batched Kaldi fbank on any device, and the batch transform that turns waveform batches into
model inputs on the training device (DATASETS.AUDIO.FBANK_ON_DEVICE).

:func:`batched_fbank` computes, for a batch of mono waveforms ``[B, S]``, what
``torchaudio.compliance.kaldi.fbank`` computes clip by clip with the recipe's settings
(:func:`bridle_audio.features.compute_fbank`: waveform mean removed, hanning window,
htk_compat, no dither, no energy, snip_edges, power spectrum, log with float eps): framing,
per-frame DC removal, pre-emphasis 0.97, window, zero padding to a power of two, rFFT, mel
filterbank (torchaudio's own ``get_mel_banks``), log. Clips of different lengths share one
padded batch: ``lengths`` gives each clip's true number of samples; frames beyond a clip's last
full frame are reported through the returned frame counts.

:class:`DeviceFbank` (the audio datasets' ``device_transform`` under DATASETS.AUDIO.FBANK_ON_DEVICE,
applied by the core to every batch in every mode) finishes the audio input on the device
exactly as the dataset does on the CPU: fbank, zero padding in the log-mel domain after the
clip's last frame, pad / crop to TARGET_LENGTH, SpecAugment ("finetune" mode), normalisation.
"""

import math
from functools import lru_cache
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torchaudio.compliance import kaldi

from .features import FbankParams, normalize

PREEMPHASIS = 0.97


@lru_cache(maxsize=8)
def _mel_matrix(num_bins: int, padded: int, sample_rate: float) -> torch.Tensor:
    """[padded // 2 + 1, num_bins] float32 (CPU): kaldi's mel banks, right column padded."""
    banks, _ = kaldi.get_mel_banks(num_bins, padded, float(sample_rate), 20.0, 0.0, 100.0, -500.0, 1.0)
    return F.pad(banks.float(), (0, 1)).T.contiguous()


def _window(size: int, device, dtype) -> torch.Tensor:
    return torch.hann_window(size, periodic=False, device=device, dtype=dtype)


def num_frames(lengths: torch.Tensor, params: FbankParams) -> torch.Tensor:
    """Frames kaldi's fbank (snip_edges) yields per clip; clips shorter than a window count 1
    (they are zero-padded to one window, as :func:`compute_fbank` does)."""
    w, s = params.window_samples, params.shift_samples
    return torch.where(lengths < w, torch.ones_like(lengths), 1 + torch.div(lengths - w, s, rounding_mode="floor"))


def batched_fbank(
    waves: torch.Tensor,
    params: FbankParams = FbankParams(),
    lengths: Optional[torch.Tensor] = None,
    subtract_mean: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Log-mel fbank ``[B, frames, mel]`` of waveforms ``[B, S]`` (float, any device) and the
    number of valid frames per clip ``[B]``. ``lengths`` (samples per clip, default S for all)
    marks the zero padding of shorter clips: each clip's mean is taken over its own samples, and
    frames after its last full window are invalid (their values are undefined; mask them).
    ``subtract_mean=False`` when the waveforms had their (whole-clip) mean removed already.
    No host sync."""
    if waves.dim() != 2:
        raise ValueError(f"batched_fbank expects waveforms [B, S]; got {list(waves.shape)}.")
    b, n = waves.shape
    w, shift = params.window_samples, params.shift_samples
    device = waves.device
    x = waves.float()
    if lengths is None:
        lengths = torch.full((b,), n, device=device, dtype=torch.long)
    lengths = lengths.to(device=device, dtype=torch.long)
    valid = torch.arange(n, device=device)[None] < lengths[:, None]
    if subtract_mean:
        mean = (x * valid).sum(1, keepdim=True) / lengths.clamp(min=1)[:, None].to(x.dtype)
        x = x - mean
    x = x * valid  # the padding stays exactly zero, as compute_fbank's window padding
    if n < w:
        x = F.pad(x, (0, w - n))
    frames = x.unfold(1, w, shift)  # [B, m, w] view
    frames = frames - frames.mean(-1, keepdim=True)  # remove_dc_offset
    prev = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # replicate-padded shift
    frames = (frames - PREEMPHASIS * prev) * _window(w, device, frames.dtype)
    padded = 1 << int(math.ceil(math.log2(w)))
    spectrum = torch.fft.rfft(frames, n=padded).abs().pow(2.0)  # [B, m, padded/2 + 1]
    mel = _mel_matrix(params.num_mel_bins, padded, params.sample_rate).to(device)
    energies = spectrum @ mel
    eps = torch.finfo(torch.float32).eps
    return energies.clamp(min=eps).log(), num_frames(lengths, params)


def fit_frames(fbank: torch.Tensor, frames: torch.Tensor, target_length: int) -> torch.Tensor:
    """[B, F, mel] -> [B, target_length, mel]: frames at or after each clip's ``frames`` count
    set to 0 (zero padding in the log-mel domain, before normalisation), then cropped from the
    first frame or zero-padded at the end."""
    b, f, m = fbank.shape
    if f < target_length:
        fbank = F.pad(fbank, (0, 0, 0, target_length - f))
    fbank = fbank[:, :target_length]
    keep = torch.arange(target_length, device=fbank.device)[None] < frames[:, None]
    return fbank * keep[..., None]


def spec_augment_batch(x: torch.Tensor, freq_mask: int, time_mask: int) -> torch.Tensor:
    """SpecAugment on [B, T, F]: per clip one frequency band of width U[0, freq_mask] and one
    time band of width U[0, time_mask] set to 0 (before normalisation, as the CPU path), drawn
    on the device (no host sync)."""
    b, t, f = x.shape
    dev = x.device
    out = x
    for size, width, dim in ((f, freq_mask, 2), (t, time_mask, 1)):
        if width <= 0:
            continue
        w = torch.randint(0, width + 1, (b, 1), device=dev)
        start = (torch.rand(b, 1, device=dev) * (size - w + 1).clamp(min=1)).long()
        pos = torch.arange(size, device=dev)[None]
        band = (pos >= start) & (pos < start + w)  # [B, size]
        band = band[:, None, :] if dim == 2 else band[:, :, None]
        out = out.masked_fill(band, 0.0)
    return out


class DeviceFbank:
    """Batch transform: ``batch["input"]`` waveforms [B, S] (+ ``batch["num_samples"]``) ->
    normalised fbank [B, TARGET_LENGTH, mel] on the batch's device."""

    def __init__(self, cfg, mode: str) -> None:
        a = cfg.INPUT.AUDIO
        self.params = FbankParams.from_config(cfg)
        self.target_length = int(a.TARGET_LENGTH)
        self.mean, self.std = float(a.NORM_MEAN), float(a.NORM_STD)
        self.spec_augment = mode == "finetune" and (int(a.FREQ_MASK) > 0 or int(a.TIME_MASK) > 0)
        self.freq_mask, self.time_mask = int(a.FREQ_MASK), int(a.TIME_MASK)
        self.train = mode != "eval"

    def __call__(self, batch: dict) -> dict:
        x = batch.get("input")
        if x is None or x.dim() != 2:
            shape = None if x is None else list(x.shape)
            raise ValueError(
                f"audio_device_fbank expects batch['input'] waveforms [B, S] (DATASETS.AUDIO.FBANK_ON_DEVICE "
                f"datasets return them); got {shape}."
            )
        batch = dict(batch)
        lengths = batch.pop("num_samples", None)
        # the dataset removed each clip's whole-clip mean before cropping, as compute_fbank
        fb, frames = batched_fbank(x, self.params, lengths, subtract_mean=False)
        fb = fit_frames(fb, frames, self.target_length)
        if self.spec_augment and self.train:
            fb = spec_augment_batch(fb, self.freq_mask, self.time_mask)
        batch["input"] = normalize(fb, self.mean, self.std)
        return batch


def build_device_fbank(cfg, mode: str) -> DeviceFbank:
    return DeviceFbank(cfg, mode)
