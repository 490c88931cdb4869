"""A trained BRIDLE tokenizer as a product: raw input of ANY length / size -> discrete codes.

``bridle.load_tokenizer(path)`` (path: an exported tokenizer folder, tools/export_encoder.py
--tokenizer, or a pretraining checkpoint holding ``tokenizer.*`` weights) returns a
:class:`BridleTokenizer`; ``tok(raw)`` / ``tok.encode(raw)`` gives codes ``[T, L]`` (``[B, T, L]``
for a batch): T tokens in time order (row-major over the patch grid, time first), L quantizer
levels (RQ: coarse to fine; VQ: L = 1), int64 ids in ``0 .. codebook_size - 1``.

How raw input becomes the model input is the plugin's :mod:`INPUT_ADAPTER <bridle.interop.adapters>`
(e.g. a waveform -> normalised log-mel frames). Then:

* an input with a time axis (the adapter's ``time_axis``) is cut into windows of the model's
  ``INPUT_SIZE`` along time; the tail is padded with the adapter's ``pad_value``, every window is
  tokenized, and the tokens whose patch starts in the padding are dropped. A clip of exactly one
  window gives the tokens of the training data's eval path; a longer one the concatenation of
  its windows' tokens (each window is tokenized on its own, as the model was trained);
* an input without a time axis keeps its size: it is padded to a multiple of the patch size and
  the tokenizer's position tables are recomputed for that patch grid (exact sin-cos
  recomputation, :func:`bridle.modeling.pos_embed.resize_pos_embed`); the model for a grid is
  built once and cached.

Deterministic: the model is in eval mode (no dropout, the quantizer's nearest-code search, no
codebook update) and runs in fp32 under ``torch.no_grad``. Windows are tokenized
``max_windows`` at a time, so memory is bounded for any length.
"""

import logging
import math
import os
from collections import OrderedDict
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

logger = logging.getLogger(__name__)

TOKENIZER_PREFIX = "tokenizer."


def tokenizer_state_of(ckpt: dict) -> dict:
    """The ``tokenizer.*`` weights of a checkpoint dict (prefix removed); {} when none."""
    from bridle.checkpoint import model_state_of

    state = model_state_of(ckpt)
    return {k[len(TOKENIZER_PREFIX) :]: v for k, v in state.items() if k.startswith(TOKENIZER_PREFIX)}


def build_tokenizer_from_checkpoint(ckpt: dict, cfg, source: str = "<checkpoint>") -> nn.Module:
    """The tokenizer module (Tokenizer, or ColdStartTokenizer when the checkpoint holds no
    trained tokenizer backbone) of ``cfg`` with the checkpoint's weights loaded (strict), in
    eval mode. Sets ``cfg.MODEL.TOKENIZER.COLD_START`` accordingly (``cfg`` must be unfrozen)."""
    from bridle.modeling.tokenizer import build_tokenizer
    from bridle.modeling.vit import vit_dims

    tok_state = tokenizer_state_of(ckpt)
    if not tok_state:
        raise ValueError(f"'{source}' holds no tokenizer (no 'tokenizer.*' keys).")
    cfg.MODEL.TOKENIZER.COLD_START = not any(k.startswith("vit.") for k in tok_state)
    tokenizer = build_tokenizer(cfg, vit_dims(cfg.MODEL.ENCODER)[0])
    missing, unexpected = tokenizer.load_state_dict(tok_state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"Tokenizer weights in '{source}' do not match the config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}."
        )
    if not getattr(tokenizer.quantizer, "is_initialized", lambda: True)():  # optional (codebook-free quantizers)
        raise ValueError(f"The tokenizer in '{source}' has uninitialised codebooks.")
    return tokenizer.eval()


def _patch_embed_of(tokenizer: nn.Module) -> nn.Module:
    return getattr(tokenizer, "vit", tokenizer).patch_embed


class BridleTokenizer(nn.Module):
    """Codes of raw input of any length / size (see the module docstring).

    Attributes: ``cfg`` (frozen config), ``adapter`` (the plugin's input adapter),
    ``num_levels``, ``codebook_size``, ``input_size`` / ``patch_size`` / ``grid_size`` (of one
    window), ``time_axis``."""

    def __init__(self, tokenizer: nn.Module, cfg, adapter, max_windows: int = 64, max_cached_grids: int = 4) -> None:
        super().__init__()
        self.tokenizer = tokenizer.eval()
        self.cfg = cfg
        self.adapter = adapter
        q = tokenizer.quantizer
        self.num_levels, self.codebook_size = int(q.num_levels), int(q.codebook_size)
        pe = _patch_embed_of(tokenizer)
        self.input_size = tuple(int(s) for s in pe.input_size)
        self.patch_size = tuple(int(p) for p in pe.patch_size)
        self.grid_size = tuple(int(g) for g in pe.grid_size)
        self.time_axis = adapter.time_axis
        self.max_windows = int(max_windows)
        self._grids: "OrderedDict[Tuple[int, ...], nn.Module]" = OrderedDict()
        self._max_cached = int(max_cached_grids)

    def train(self, mode: bool = True) -> "BridleTokenizer":
        return super().train(False)  # always deterministic (eval mode)

    # ------------------------------------------------------------------ public
    def forward(self, raw) -> Union[torch.Tensor, List[torch.Tensor]]:
        return self.encode(raw)

    @torch.no_grad()
    def encode(self, raw) -> Union[torch.Tensor, List[torch.Tensor]]:
        """Codes ``[T, L]`` of one raw item, ``[B, T, L]`` of a batch (a tensor with one more
        dim than an item: items of equal length), or a list of ``[T_i, L]`` for a list of items
        of any lengths."""
        if isinstance(raw, (list, tuple)):
            return [self.encode(r) for r in raw]
        raw = torch.as_tensor(raw)
        single = raw.dim() == int(self.adapter.raw_ndim)
        if not single and raw.dim() != int(self.adapter.raw_ndim) + 1:
            raise ValueError(
                f"{self.adapter.modality} tokenizer: expected one item with {self.adapter.raw_ndim} dims or a batch "
                f"with {self.adapter.raw_ndim + 1}; got {list(raw.shape)} ({self.adapter.describe().get('raw', '')})."
            )
        device = next(self.tokenizer.parameters()).device
        x, lengths = self.adapter((raw[None] if single else raw).to(device))
        codes = self.encode_model_input(x.to(device), lengths)
        return codes[0] if single else codes

    @torch.no_grad()
    def encode_model_input(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Codes ``[B, T, L]`` of a model input batch ``[B, (C,) *dims]`` whose time dim (or,
        without one, every dim) may have any size. ``lengths``: valid size along time of each
        item; the batch keeps the tokens of the longest (shorter items' padded tokens are
        kept too: tokenize items of different lengths as a list)."""
        nd = len(self.input_size)
        x = x.float()
        if self.time_axis is None:
            return self._encode_any_grid(x)
        ax = x.dim() - nd + int(self.time_axis)
        t_win, t_patch = self.input_size[self.time_axis], self.patch_size[self.time_axis]
        others = [s for i, s in enumerate(x.shape[x.dim() - nd :]) if i != self.time_axis]
        want = [s for i, s in enumerate(self.input_size) if i != self.time_axis]
        if others != want:
            raise ValueError(
                f"model input {list(x.shape)}: the non-time dims must be {want} (MODEL.PATCH_EMBED.INPUT_SIZE)."
            )
        length = int(x.shape[ax]) if lengths is None else int(torch.as_tensor(lengths).max())
        length = max(1, min(length, int(x.shape[ax])))
        x = x.narrow(ax, 0, length)
        n_win = math.ceil(length / t_win)
        pad = n_win * t_win - length
        if pad:
            shape = list(x.shape)
            shape[ax] = pad
            x = torch.cat([x, x.new_full(shape, float(self.adapter.pad_value))], dim=ax)
        b = x.shape[0]
        # [B, ..., n_win * t_win, ...] -> [B * n_win, ..., t_win, ...] (windows in time order)
        xs = x.unflatten(ax, (n_win, t_win)).movedim(ax, 1).flatten(0, 1)
        codes = torch.cat(
            [
                self._tokenize(self.tokenizer, xs[i : i + self.max_windows])
                for i in range(0, xs.shape[0], self.max_windows)
            ]
        )  # [B * n_win, N, L]
        grid = list(self.grid_size)
        codes = codes.reshape(b, n_win, *grid, self.num_levels)
        codes = codes.movedim(1, 1 + int(self.time_axis))  # next to the time grid dim
        g = 1 + int(self.time_axis)
        codes = codes.flatten(g, g + 1)  # time grid dim = n_win * grid[t]
        keep = math.ceil(length / t_patch)  # patches that start inside the input
        codes = codes.narrow(g, 0, keep).movedim(g, 1)  # time first: tokens in time order
        return codes.reshape(b, -1, self.num_levels)

    # ------------------------------------------------------------------ internals
    def _tokenize(self, tokenizer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return tokenizer(x).codes.long()

    def _encode_any_grid(self, x: torch.Tensor) -> torch.Tensor:
        nd = len(self.input_size)
        size = list(x.shape[x.dim() - nd :])
        padded = [math.ceil(s / p) * p for s, p in zip(size, self.patch_size)]
        if padded != size:
            pads: List[int] = []
            for s, ps in reversed(list(zip(size, padded))):
                pads += [0, ps - s]
            x = F.pad(x, pads, value=float(self.adapter.pad_value))
        model = self.tokenizer if tuple(padded) == self.input_size else self._model_for(tuple(padded))
        return torch.cat(
            [self._tokenize(model, x[i : i + self.max_windows]) for i in range(0, x.shape[0], self.max_windows)]
        )

    def _model_for(self, input_size: Tuple[int, ...]) -> nn.Module:
        """The tokenizer rebuilt for another input size (position tables resized), cached."""
        from bridle.modeling.pos_embed import resize_pos_embed
        from bridle.modeling.tokenizer import build_tokenizer
        from bridle.modeling.vit import vit_dims

        if input_size in self._grids:
            self._grids.move_to_end(input_size)
            return self._grids[input_size]
        cfg = self.cfg.clone()
        cfg.defrost()
        cfg.MODEL.PATCH_EMBED.INPUT_SIZE = list(input_size)
        model = build_tokenizer(cfg, vit_dims(cfg.MODEL.ENCODER)[0])
        own = model.state_dict()
        state = {}
        for k, v in self.tokenizer.state_dict().items():
            if k.endswith("pos_embed") and k in own and own[k].shape != v.shape:
                new_grid = tuple(_patch_embed_of(model).grid_size)
                extra = own[k].shape[-2] - math.prod(new_grid)
                v, _ = resize_pos_embed(v, new_grid, self.grid_size, num_extra_tokens=extra)
            state[k] = v
        model.load_state_dict(state, strict=True)
        model.to(next(self.tokenizer.parameters()).device).eval()
        self._grids[input_size] = model
        while len(self._grids) > self._max_cached:
            self._grids.popitem(last=False)
        return model

    def extra_repr(self) -> str:
        return (
            f"modality={self.adapter.modality}, window={list(self.input_size)}, patch={list(self.patch_size)}, "
            f"levels={self.num_levels}, codebook_size={self.codebook_size}"
        )


def load_tokenizer(
    path: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu", max_windows: int = 64
) -> BridleTokenizer:
    """:class:`BridleTokenizer` of an exported tokenizer folder or a pretraining checkpoint."""
    from bridle.checkpoint import cfg_from_checkpoint, load_checkpoint_file
    from bridle.config import get_cfg

    from .adapters import input_adapter

    path = os.fspath(path)
    ckpt = load_checkpoint_file(path, map_location="cpu")
    cfg = cfg_from_checkpoint(ckpt, get_cfg())
    tokenizer = build_tokenizer_from_checkpoint(ckpt, cfg, path)
    cfg.freeze()
    tok = BridleTokenizer(tokenizer, cfg, input_adapter(cfg), max_windows=max_windows)
    return tok.to(map_location).eval()
