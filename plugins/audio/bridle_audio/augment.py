"""Per-clip augmentations, applied by the datasets according to their mode.

- roll + random gain on the waveform (every training mode),
- waveform mixup with another clip, labels mixed with the same lambda (finetune only),
- SpecAugment frequency / time masks on the un-normalised log-mel fbank (finetune only).

Randomness comes from torch's global generator, which DataLoader seeds differently per worker.
"""

from typing import Dict, Tuple

import torch
import torchaudio.transforms as TT


def sample_beta(alpha: float) -> float:
    """One draw of Beta(alpha, alpha) as a Python float (data-loading side, not the model)."""
    a = torch.tensor(float(alpha))
    return float(torch.distributions.Beta(a, a).sample())


def roll_and_gain(wav: torch.Tensor, roll: bool, gain: bool, gain_beta: float) -> torch.Tensor:
    """Roll ``[1, S]`` circularly by a uniform random offset and scale it by
    ``Beta(gain_beta, gain_beta) + 0.5``."""
    if roll and wav.shape[-1] > 1:
        wav = torch.roll(wav, int(torch.randint(wav.shape[-1], ())), dims=-1)
    if gain:
        wav = wav * (sample_beta(gain_beta) + 0.5)
    return wav


def mix_waveforms(first: torch.Tensor, second: torch.Tensor, lam: float) -> torch.Tensor:
    """``lam * first + (1 - lam) * second`` of two mean-removed mono clips; ``second`` is cut or
    zero-padded to ``first``'s length (the result keeps the first clip's duration)."""
    first = first - first.mean()
    second = second - second.mean()
    n = first.shape[-1]
    if second.shape[-1] < n:
        second = torch.nn.functional.pad(second, (0, n - second.shape[-1]))
    else:
        second = second[..., :n]
    mixed = lam * first + (1.0 - lam) * second
    return mixed - mixed.mean()


class SpecAugment:
    """One frequency mask (width up to ``freq_mask`` bins) and one time mask (up to ``time_mask``
    frames) of torchaudio on an fbank ``[frames, mel]``; masked values become 0, the same value
    as padding, before normalisation (AST/AudioMAE order)."""

    def __init__(self, freq_mask: int, time_mask: int) -> None:
        if freq_mask < 0 or time_mask < 0:
            raise ValueError(f"INPUT.AUDIO.FREQ_MASK / TIME_MASK must be >= 0; got {freq_mask} / {time_mask}.")
        self.freq_mask = int(freq_mask)
        self.time_mask = int(time_mask)
        self._freq: Dict[int, TT.FrequencyMasking] = {}
        self._time: Dict[int, TT.TimeMasking] = {}

    @property
    def enabled(self) -> bool:
        return self.freq_mask > 0 or self.time_mask > 0

    def _masks(self, frames: int, bins: int) -> Tuple[TT.FrequencyMasking, TT.TimeMasking]:
        # A mask wider than the axis would make torchaudio pick invalid starts: clamp it.
        f, t = min(self.freq_mask, bins), min(self.time_mask, frames)
        if f not in self._freq:
            self._freq[f] = TT.FrequencyMasking(f)
        if t not in self._time:
            self._time[t] = TT.TimeMasking(t)
        return self._freq[f], self._time[t]

    def __call__(self, fbank: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return fbank
        freq, time = self._masks(fbank.shape[0], fbank.shape[1])
        spec = fbank.t().unsqueeze(0)  # torchaudio wants [..., freq, time]
        if self.freq_mask > 0:
            spec = freq(spec)
        if self.time_mask > 0:
            spec = time(spec)
        return spec.squeeze(0).t().contiguous()
