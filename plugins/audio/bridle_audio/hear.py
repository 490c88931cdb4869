"""The HEAR 2021 API (hearbenchmark.com/hear-api.html) for any Bridle audio encoder.

    hear-validator bridle_audio.hear --model ENCODER          # ENCODER: what bridle.load_encoder reads
    python -m heareval.embeddings.runner bridle_audio.hear --model ENCODER --tasks-dir tasks \
        [--model-options '{"hop_ms": "native"}']

:func:`load_model` returns a :class:`HearEncoder` (an ``nn.Module``: ``.to(device)`` moves it)
with ``sample_rate`` (the encoder's INPUT.AUDIO.SAMPLE_RATE), ``scene_embedding_size`` and
``timestamp_embedding_size`` (both the encoder width D). Audio ``[B, N]`` float32 of any length:

* **features**: the training recipe (:mod:`bridle_audio.features`): each clip's mean removed,
  kaldi fbank (:func:`bridle_audio.device_fbank.batched_fbank`, computed on the device of the
  audio tensor), zero padding in the log-mel domain after the clip's last frame, and
  ``(x - NORM_MEAN) / (2 * NORM_STD)``: what the dataset feeds the encoder in "eval" mode.
* **chunks**: the fbank frames are cut into consecutive chunks of the encoder's window
  (INPUT.AUDIO.TARGET_LENGTH frames, 1024 x 10 ms = 10.24 s for the paper's models), the last
  one zero-padded. Chunks go through the encoder ``chunk_batch_size`` at a time, and the fbank
  of a group is computed from the group's own samples, so memory beyond the input and the
  output does not grow with the clip's length.
* **pooling**: the patch tokens after the encoder's final norm are averaged over the frequency
  patches of each time column: one embedding per column of the patch grid, the native hop
  (PATCH_SIZE[0] frames: 16 x 10 ms = 160 ms), centred on the samples its frames cover. Columns
  past the clip's last frame (the padding of the last chunk) are dropped.
* **timestamps**: ``t_k = k * hop`` ms for ``k = 0 .. floor(duration / hop)`` (none past the end,
  uniform), embeddings linearly interpolated between the two nearest column centres (the first
  / last column before the first / after the last centre). The default hop is the native hop
  divided by the smallest integer that brings it to 50 ms or less (160 ms -> 40 ms). With
  ``hop_ms="native"`` the timestamps are the column centres that lie within the clip and the
  embeddings the columns themselves.
* **scene embedding**: the mean of the column embeddings of all chunks (the native columns, not
  the interpolated timestamps). For a clip of exactly one window this is the mean of all patch
  tokens, the feature ``tools/extract_features.py`` writes (without ``--cls``).

Options (keyword arguments of :func:`load_model`, i.e. the eval kit's ``--model-options``, else
the environment variables, else the default): ``hop_ms`` / ``BRIDLE_HEAR_HOP_MS`` (a number of
milliseconds or ``native``), ``chunk_batch_size`` / ``BRIDLE_HEAR_CHUNK_BATCH`` (chunks per
encoder call, default 16).
"""

import math
import os
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn

from bridle.errors import UserError

from .device_fbank import batched_fbank, fit_frames
from .features import FbankParams, normalize

HOP_ENV = "BRIDLE_HEAR_HOP_MS"
CHUNK_BATCH_ENV = "BRIDLE_HEAR_CHUNK_BATCH"
#: Largest default hop between timestamps (ms): the tolerance of HEAR's onset-based tasks.
MAX_DEFAULT_HOP_MS = 50.0
DEFAULT_CHUNK_BATCH = 16
#: Timestamps interpolated at a time (bounds the temporaries of long clips).
INTERP_BLOCK = 2048


class HearError(UserError, ValueError):
    """The model file, an option or the audio cannot be used (one line)."""


# ----------------------------------------------------------------------------- the model
class HearEncoder(nn.Module):
    """A Bridle audio encoder with its feature recipe, chunking and pooling (module docstring)."""

    def __init__(
        self,
        encoder: nn.Module,
        params: FbankParams,
        norm_mean: float,
        norm_std: float,
        hop_ms: Union[float, str, None] = None,
        chunk_batch_size: int = DEFAULT_CHUNK_BATCH,
    ) -> None:
        super().__init__()
        grid = tuple(int(g) for g in getattr(encoder, "grid_size", ()))
        embed = getattr(encoder, "patch_embed", None)
        input_size = tuple(int(s) for s in getattr(embed, "input_size", ()))
        if len(grid) != 2 or len(input_size) != 2 or input_size[1] != params.num_mel_bins:
            raise HearError(
                f"bridle_audio.hear: expected an audio encoder on (time, mel) = (frames, "
                f"{params.num_mel_bins}) fbanks with a 2-D patch grid; got input size {list(input_size)}, "
                f"grid {list(grid)}."
            )
        if int(chunk_batch_size) < 1:
            raise HearError(f"bridle_audio.hear: chunk_batch_size must be >= 1; got {chunk_batch_size}.")
        self.encoder = encoder.eval()
        self.params = params
        self.norm_mean, self.norm_std = float(norm_mean), float(norm_std)
        self.window_frames = input_size[0]  # TARGET_LENGTH: frames per chunk
        self.grid = grid  # (time columns, frequency patches) per chunk
        self.patch_frames = input_size[0] // grid[0]
        self.chunk_batch_size = int(chunk_batch_size)
        # the HEAR API's attributes
        self.sample_rate = int(params.sample_rate)
        dim = int(getattr(encoder, "embed_dim", 0) or encoder.cls_token.shape[-1])
        self.scene_embedding_size = dim
        self.timestamp_embedding_size = dim
        self.native_hop_ms = 1000.0 * self.patch_frames * params.shift_samples / params.sample_rate
        self.hop_ms = self._resolve_hop(hop_ms)

    def _resolve_hop(self, hop_ms: Union[float, str, None]) -> Optional[float]:
        """None = native (the column centres); else the hop in ms."""
        if hop_ms is None or (isinstance(hop_ms, str) and not hop_ms.strip()):
            return self.native_hop_ms / math.ceil(self.native_hop_ms / MAX_DEFAULT_HOP_MS - 1e-9)
        if isinstance(hop_ms, str) and hop_ms.strip().lower() == "native":
            return None
        try:
            hop = float(hop_ms)
        except (TypeError, ValueError):
            hop = float("nan")
        if not (hop > 0 and math.isfinite(hop)):
            raise HearError(
                f"bridle_audio.hear: hop_ms ({HOP_ENV}) must be 'native' or a number of ms > 0; got {hop_ms!r}."
            )
        return hop

    def train(self, mode: bool = True) -> "HearEncoder":
        """The encoder stays in eval mode: embeddings are deterministic."""
        super().train(mode)
        self.encoder.eval()
        return self

    @property
    def window_seconds(self) -> float:
        return self.params.samples_for_frames(self.window_frames) / self.params.sample_rate

    def column_centres_ms(self, num_columns: int) -> torch.Tensor:
        """Centres (ms, float64) of the first ``num_columns`` time columns: the middle of the
        samples their frames span (first frame's start to last frame's end)."""
        p = self.params
        first = torch.arange(num_columns, dtype=torch.float64) * (self.patch_frames * p.shift_samples)
        half_span = ((self.patch_frames - 1) * p.shift_samples + p.window_samples) / 2.0
        return (first + half_span) * (1000.0 / p.sample_rate)

    # ------------------------------------------------------------------ columns
    def _check_audio(self, audio: torch.Tensor) -> torch.Tensor:
        if not isinstance(audio, torch.Tensor) or audio.dim() != 2:
            shape = list(audio.shape) if isinstance(audio, torch.Tensor) else type(audio).__name__
            raise HearError(f"bridle_audio.hear: expected audio [batch, samples]; got {shape}.")
        if audio.shape[1] == 0:
            raise HearError("bridle_audio.hear: got audio of 0 samples.")
        return audio if audio.dtype == torch.float32 else audio.float()

    @torch.no_grad()
    def column_embeddings(self, audio: torch.Tensor) -> torch.Tensor:
        """``[B, C, D]`` float32 on the encoder's device: one embedding per time column with at
        least one fbank frame of the clip (C = ceil(frames / PATCH_SIZE[0]))."""
        audio = self._check_audio(audio)
        p = self.params
        b, n = audio.shape
        frames = p.num_frames(n)
        num_cols = -(-frames // self.patch_frames)
        cols_per_chunk, num_patches = self.grid[0], self.grid[0] * self.grid[1]
        num_chunks = -(-num_cols // cols_per_chunk)
        chunk_samples = p.samples_for_frames(self.window_frames)
        chunk_stride = self.window_frames * p.shift_samples
        weight = next(self.encoder.parameters())
        device, dtype = weight.device, weight.dtype
        mean = audio.mean(dim=1)  # each clip's whole mean, removed as the dataset does
        out = torch.empty(b, num_chunks * cols_per_chunk, self.scene_embedding_size, device=device)
        items: List[Tuple[int, int]] = [(i, c) for i in range(b) for c in range(num_chunks)]
        for g in range(0, len(items), self.chunk_batch_size):
            group = items[g : g + self.chunk_batch_size]
            segs = torch.zeros(len(group), chunk_samples, device=audio.device)
            lengths = torch.empty(len(group), dtype=torch.long)
            for j, (i, c) in enumerate(group):
                start = c * chunk_stride
                seg = audio[i, start : start + chunk_samples]
                segs[j, : seg.shape[0]] = seg - mean[i]
                lengths[j] = seg.shape[0]
            lengths = lengths.to(audio.device)
            fb, valid = batched_fbank(segs, p, lengths, subtract_mean=False)
            x = normalize(fit_frames(fb, valid, self.window_frames), self.norm_mean, self.norm_std)
            tokens = self.encoder(x.to(device=device, dtype=dtype))
            tokens = tokens[:, tokens.shape[1] - num_patches :]  # after cls: the patches, time-major grid order
            columns = tokens.reshape(len(group), cols_per_chunk, self.grid[1], -1).mean(dim=2)
            for j, (i, c) in enumerate(group):
                out[i, c * cols_per_chunk : (c + 1) * cols_per_chunk] = columns[j].float()
        return out[:, :num_cols]

    # ------------------------------------------------------------------ HEAR outputs
    def timestamp_embeddings(self, audio: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(``[B, T, D]`` float32, timestamps ``[B, T]`` float32 ms), on the encoder's device."""
        cols = self.column_embeddings(audio)
        b, c, _ = cols.shape
        device = cols.device
        duration = 1000.0 * audio.shape[1] / self.sample_rate
        centres = self.column_centres_ms(c)
        if self.hop_ms is None:  # native: the columns whose centre lies within the clip
            keep = int((centres <= duration).sum())
            if keep == 0:  # a clip shorter than half a column: its one column, stamped at the end
                return cols[:, :1], torch.full((b, 1), duration, dtype=torch.float32, device=device)
            times = centres[:keep]
            return cols[:, :keep], times.to(torch.float32).to(device).expand(b, -1).contiguous()
        count = int(math.floor(duration / self.hop_ms + 1e-9)) + 1
        times = torch.arange(count, dtype=torch.float64) * self.hop_ms
        times = times[times <= duration]
        pos = ((times - centres[0]) / self.native_hop_ms).clamp(0.0, max(c - 1.0, 0.0))
        lo = pos.floor().long().clamp(max=max(c - 2, 0))
        hi = (lo + 1).clamp(max=c - 1)
        w = (pos - lo.double()).to(torch.float32)
        emb = torch.empty(b, times.shape[0], cols.shape[2], device=device)
        for s in range(0, times.shape[0], INTERP_BLOCK):  # bounded temporaries for long clips
            sl = slice(s, s + INTERP_BLOCK)
            torch.lerp(
                cols[:, lo[sl].to(device)], cols[:, hi[sl].to(device)], w[sl].to(device)[None, :, None], out=emb[:, sl]
            )
        return emb, times.to(torch.float32).to(device).expand(b, -1).contiguous()

    def scene_embeddings(self, audio: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` float32: the mean of the column embeddings (module docstring)."""
        return self.column_embeddings(audio).mean(dim=1)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.scene_embeddings(audio)


# ----------------------------------------------------------------------------- loading
def _stored_cfg(encoder: nn.Module, path: str):
    """The config the encoder was rebuilt from (``encoder.cfg``, set by :func:`bridle.load_encoder`;
    else the one stored with the weights); it gives the fbank settings and the normalisation."""
    from bridle.checkpoint import cfg_from_checkpoint, load_checkpoint_file
    from bridle.config import get_cfg

    cfg = getattr(encoder, "cfg", None)
    if cfg is None:
        ckpt = load_checkpoint_file(path)
        if not (isinstance(ckpt.get("cfg"), str) and ckpt["cfg"].strip()):
            raise HearError(
                f"{path}: no stored config, so its feature settings (INPUT.AUDIO) are unknown; export the "
                "encoder from a checkpoint written by a Bridle trainer."
            )
        cfg = cfg_from_checkpoint(ckpt, get_cfg())
    return cfg


def load_model(model_file_path: str = "", hop_ms: Union[float, str, None] = None, chunk_batch_size=None) -> HearEncoder:
    """HEAR ``load_model``: the audio encoder at ``model_file_path`` (an exported encoder file or
    folder, or a full Bridle checkpoint: whatever :func:`bridle.load_encoder` reads), on the CPU
    in eval mode. ``hop_ms``: ms between timestamps or ``"native"`` (default: ``$BRIDLE_HEAR_HOP_MS``,
    else the native hop divided down to <= 50 ms); ``chunk_batch_size``: encoder windows per
    forward pass (default ``$BRIDLE_HEAR_CHUNK_BATCH``, else 16)."""
    import bridle

    if not model_file_path:
        raise HearError(
            "bridle_audio.hear.load_model: model_file_path: expected an exported Bridle audio encoder "
            "(tools/export_encoder.py) or a Bridle checkpoint; Bridle ships no default weights."
        )
    path = os.fspath(model_file_path)
    if not os.path.exists(path):
        raise HearError(f"bridle_audio.hear.load_model: '{path}' does not exist.")
    if hop_ms is None:
        hop_ms = os.environ.get(HOP_ENV) or None
    if chunk_batch_size is None:
        chunk_batch_size = os.environ.get(CHUNK_BATCH_ENV) or DEFAULT_CHUNK_BATCH
    try:
        chunk_batch_size = int(chunk_batch_size)
    except (TypeError, ValueError):
        raise HearError(
            f"bridle_audio.hear: chunk_batch_size ({CHUNK_BATCH_ENV}) must be an integer; got {chunk_batch_size!r}."
        )
    encoder = bridle.load_encoder(path)
    cfg = _stored_cfg(encoder, path)
    if "AUDIO" not in cfg.INPUT or str(cfg.MODEL.PATCH_EMBED.NAME) != "spectrogram":
        raise HearError(
            f"{path}: not an audio encoder (MODEL.PATCH_EMBED.NAME is '{cfg.MODEL.PATCH_EMBED.NAME}', "
            "expected 'spectrogram'); the HEAR API takes audio encoders only."
        )
    a = cfg.INPUT.AUDIO
    return HearEncoder(
        encoder, FbankParams.from_config(cfg), float(a.NORM_MEAN), float(a.NORM_STD), hop_ms, chunk_batch_size
    )


def get_timestamp_embeddings(audio: torch.Tensor, model: HearEncoder) -> Tuple[torch.Tensor, torch.Tensor]:
    """HEAR: audio ``[B, N]`` at ``model.sample_rate`` -> (embeddings ``[B, T, D]``, timestamps
    ``[B, T]`` in ms), float32, on the model's device."""
    with torch.no_grad():
        return model.timestamp_embeddings(audio)


def get_scene_embeddings(audio: torch.Tensor, model: HearEncoder) -> torch.Tensor:
    """HEAR: audio ``[B, N]`` at ``model.sample_rate`` -> embeddings ``[B, D]`` float32."""
    with torch.no_grad():
        return model.scene_embeddings(audio)
