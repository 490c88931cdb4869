"""MASK_GENERATOR entry "time_freq": 2-D masking of a (time, frequency) patch grid.

Whole time rows (INPUT.AUDIO.MASK_TIME_RATIO of them) and whole frequency columns
(MASK_FREQ_RATIO) are masked, then random single patches top the mask up to exactly
``round(N * MODEL.MASK.RATIO)`` per sample, as the encoder needs a dense visible set.
"""

from typing import Sequence

import torch

from bridle.modeling.masking import mask_from_scores, num_masked_tokens
from bridle.registry import MASK_GENERATOR


def _pick(batch: int, n: int, k: int, device, generator) -> torch.Tensor:
    """bool [batch, n] with exactly k random True per row."""
    return mask_from_scores(torch.rand(batch, n, device=device, generator=generator), k)


class TimeFreqMaskGenerator:
    """Masks for a grid ``(T, F)`` in row-major order (token ``t * F + f``)."""

    def __init__(self, grid_size: Sequence[int], ratio: float, time_ratio: float, freq_ratio: float) -> None:
        if len(grid_size) != 2:
            raise ValueError(
                f"MASK_GENERATOR 'time_freq' needs a 2-D (time, frequency) patch grid; got {list(grid_size)}."
            )
        for key, r in (("MASK_TIME_RATIO", time_ratio), ("MASK_FREQ_RATIO", freq_ratio)):
            if not 0.0 <= r < 1.0:
                raise ValueError(f"INPUT.AUDIO.{key} must be in [0, 1); got {r}.")
        self.grid_size = (int(grid_size[0]), int(grid_size[1]))
        t, f = self.grid_size
        self.num_tokens = t * f
        self.num_masked = num_masked_tokens(self.num_tokens, ratio)
        self.num_time = int(round(t * time_ratio))
        self.num_freq = int(round(f * freq_ratio))
        structured = self.num_time * f + self.num_freq * t - self.num_time * self.num_freq
        if structured > self.num_masked:
            raise ValueError(
                f"MASK_GENERATOR 'time_freq': masking {self.num_time}/{t} time rows and "
                f"{self.num_freq}/{f} frequency columns hides {structured} of {self.num_tokens} "
                f"patches, more than MODEL.MASK.RATIO {ratio} allows ({self.num_masked}); lower "
                "INPUT.AUDIO.MASK_TIME_RATIO / MASK_FREQ_RATIO or raise MODEL.MASK.RATIO."
            )

    def __call__(self, batch_size: int, device=None, generator=None) -> torch.Tensor:
        t, f = self.grid_size
        rows = _pick(batch_size, t, self.num_time, device, generator)
        cols = _pick(batch_size, f, self.num_freq, device, generator)
        structured = (rows[:, :, None] | cols[:, None, :]).reshape(batch_size, self.num_tokens)
        # Structured patches score 2 (always kept), the rest U[0,1): top-k tops up at random.
        scores = torch.rand(batch_size, self.num_tokens, device=device, generator=generator)
        scores = scores.masked_fill(structured, 2.0)
        return mask_from_scores(scores, self.num_masked)


@MASK_GENERATOR.register(name="time_freq")
def build_time_freq_mask(cfg, grid_size) -> TimeFreqMaskGenerator:
    a = cfg.INPUT.AUDIO
    return TimeFreqMaskGenerator(grid_size, cfg.MODEL.MASK.RATIO, a.MASK_TIME_RATIO, a.MASK_FREQ_RATIO)
