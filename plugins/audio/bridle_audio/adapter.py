"""INPUT_ADAPTER "spectrogram" (bridle.interop.adapters): mono waveforms -> normalised log-mel
fbanks of their whole length (the recipe of :mod:`bridle_audio.features`, computed batched on the
waveform's device by :func:`bridle_audio.device_fbank.batched_fbank`), for exported models and
``bridle.load_tokenizer`` (which cuts them into windows of TARGET_LENGTH frames).

A long waveform's fbank is computed ``CHUNK_FRAMES`` frames at a time (kaldi's frames are
independent windows, so the chunks give the whole-clip values; the clip's mean is taken over the
whole clip first): the framing, FFT and mel temporaries, about ten times the waveform's size
when computed at once, stay bounded, and memory beyond the input and the fbank does not grow
with the clip's length."""

from typing import Optional, Tuple

import torch

from bridle.interop.adapters import INPUT_ADAPTER

from .device_fbank import batched_fbank
from .features import FbankParams, normalize

#: Fbank frames computed at a time for a long waveform (8192 x 10 ms = 82 s).
CHUNK_FRAMES = 8192


class AudioAdapter:
    modality = "audio"
    raw_ndim = 1  # [S]
    time_axis: Optional[int] = 0  # INPUT_SIZE = [frames, mel]

    def __init__(self, cfg) -> None:
        a = cfg.INPUT.AUDIO
        self.params = FbankParams.from_config(cfg)
        self.mean, self.std = float(a.NORM_MEAN), float(a.NORM_STD)
        self.target_length = int(a.TARGET_LENGTH)
        self.label_csv = str(cfg.DATASETS.AUDIO.LABEL_CSV)
        # zero padding in the log-mel domain, before normalisation (as the datasets pad)
        self.pad_value = float(normalize(torch.zeros(()), self.mean, self.std))

    def __call__(self, raw: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if raw.dim() != 2:
            raise ValueError(f"audio input: expected a mono waveform [S] (or a batch [B, S]); got {list(raw.shape)}.")
        x, p = raw.float(), self.params
        total = p.num_frames(x.shape[1])
        if total <= CHUNK_FRAMES:
            fb, frames = batched_fbank(x, p)  # each clip's mean removed
            return normalize(fb, self.mean, self.std), frames
        mean = x.sum(1, keepdim=True) / x.shape[1]  # batched_fbank's whole-clip mean
        out = torch.empty(x.shape[0], total, p.num_mel_bins, device=x.device)
        for f0 in range(0, total, CHUNK_FRAMES):
            f = min(CHUNK_FRAMES, total - f0)
            s0 = f0 * p.shift_samples
            fb, _ = batched_fbank(x[:, s0 : s0 + p.samples_for_frames(f)] - mean, p, subtract_mean=False)
            out[:, f0 : f0 + f] = normalize(fb[:, :f], self.mean, self.std)
        return out, torch.full((x.shape[0],), total, dtype=torch.long, device=x.device)

    def describe(self) -> dict:
        p = self.params
        return {
            "modality": self.modality,
            "raw": f"mono waveform [S], float, {p.sample_rate} Hz",
            "preprocessing": f"waveform mean removed; Kaldi log-mel fbank, {p.num_mel_bins} mel bins, "
            f"{p.frame_length_ms} ms hanning windows every {p.frame_shift_ms} ms (htk_compat, no dither, no energy); "
            f"(x - {self.mean}) / (2 * {self.std}) (INPUT.AUDIO.NORM_MEAN / NORM_STD)",
            "window": f"{self.target_length} frames ({self.target_length * p.frame_shift_ms / 1000:.2f} s); "
            "shorter clips zero-padded in the log-mel domain, longer ones cut into windows",
            "model_input": f"[B, frames, mel] = [B, {self.target_length}, {p.num_mel_bins}] (timm: one channel, "
            "img_size = (frames, mel))",
        }

    def timm_in_chans(self) -> int:
        return 1

    def label_names(self):
        """Display names of DATASETS.AUDIO.LABEL_CSV (a classifier's classes), None without it."""
        import os

        from .manifest import read_label_csv

        return read_label_csv(self.label_csv)[1] if self.label_csv and os.path.isfile(self.label_csv) else None

    def commands(self, folder: str) -> list:
        """Shell commands that check an exported audio encoder (printed by the demo)."""
        return [f"python -m bridle_audio.hear_validate --model {folder}"]

    def card_usage(self, folder: str) -> str:
        return "\n".join(
            [
                "Through the HEAR 2021 API (any clip length, scene and timestamp embeddings):",
                "",
                "```bash",
                f"hear-validator bridle_audio.hear --model {folder}  # needs tensorflow importable, or:",
                f"python -m bridle_audio.hear_validate --model {folder}  # the same check with a tensorflow stand-in",
                "```",
                "",
                "```python",
                "import bridle_audio.hear as hear",
                "",
                f'model = hear.load_model("{folder}")',
                "emb = hear.get_scene_embeddings(audio, model)  # audio [B, S] at model.sample_rate -> [B, D]",
                "```",
            ]
        )


@INPUT_ADAPTER.register(name="spectrogram")
def build_audio_adapter(cfg) -> AudioAdapter:
    return AudioAdapter(cfg)
