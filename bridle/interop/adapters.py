"""Input adapters: the modality-specific step from RAW input (what a user has: a recording, a
picture, a clip of frames) to the MODEL input, and what an exported model's card and config.json
say about it. Plugins register one per patch embedding they provide.

INPUT_ADAPTER entries are keyed by the PATCH_EMBED name (``MODEL.PATCH_EMBED.NAME``), since the
patch embedding fixes what the model reads; ``fn(cfg) -> adapter`` where the adapter has

* ``modality`` (str) and ``raw_ndim`` (int): the number of dims of ONE raw item (a batch has
  one more);
* ``time_axis`` (int or None): the index into ``MODEL.PATCH_EMBED.INPUT_SIZE`` (the patch
  grid's dims; the model input is ``[B, C, *INPUT_SIZE]``, or ``[B, *INPUT_SIZE]`` with one
  channel) of the time dim, along which inputs of any length are cut into windows of
  ``INPUT_SIZE[time_axis]``; None: no dim is time, inputs of any size keep their size and the
  position table is resized to their patch grid instead;
* ``pad_value`` (float): the model-input value of padding (the tail of the last window);
* ``__call__(raw [B, *raw dims]) -> (model input [B, *dims], lengths [B] or None)``: the
  preprocessing of the training data's eval transform, on the raw input's device, leaving the
  time axis at its natural length (``lengths``: each item's valid length along it when the
  items were padded to a common one);
* ``describe() -> dict``: JSON-able description of the raw input and the preprocessing
  (config.json's ``input``, the model card's "Input" section);
* ``timm_in_chans() -> int or None``: the channel count of timm's 2-D patch embedding for this
  input (None: timm has no equivalent, e.g. 3-D patches spanning frames);
* ``card_usage(folder) -> str``: extra Markdown for the model card's "How to use" section
  (e.g. a plugin's benchmark API), may be "";
* optionally ``commands(folder) -> list of str``: shell commands that use an exported encoder
  (the demos print them, e.g. a benchmark's validator), and ``label_names() -> list or None``:
  the class names of the config's labelled data (a classifier's export).

The core's entry "conv" (the plain ConvPatchEmbed) is the identity: the raw input is the model
input, ``[C, *INPUT_SIZE]`` (or without C when IN_CHANS is 1).
"""

from typing import Optional, Tuple

import torch

from bridle.registry import Registry

INPUT_ADAPTER = Registry(
    "INPUT_ADAPTER",
    "fn(cfg) -> adapter keyed by MODEL.PATCH_EMBED.NAME: .modality, .raw_ndim, .time_axis (or None), "
    ".pad_value, __call__(raw [B, ...]) -> (model input [B, *dims], lengths or None), describe() -> dict, "
    "timm_in_chans() -> int or None, card_usage(folder) -> str (bridle.interop.adapters).",
    core_modules=("bridle.interop.adapters",),
)


class IdentityAdapter:
    """The raw input is the model input (``MODEL.PATCH_EMBED`` "conv"): no time axis."""

    modality = "generic"
    time_axis: Optional[int] = None
    pad_value = 0.0

    def __init__(self, cfg) -> None:
        p = cfg.MODEL.PATCH_EMBED
        self.in_chans = int(p.IN_CHANS)
        self.input_size = [int(s) for s in p.INPUT_SIZE]
        self.raw_ndim = len(self.input_size) + (0 if self.in_chans == 1 else 1)

    def __call__(self, raw: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        x = raw.float()
        if self.in_chans == 1 and x.dim() == len(self.input_size) + 2 and x.shape[1] == 1:
            x = x[:, 0]
        return x, None

    def describe(self) -> dict:
        shape = ([self.in_chans] if self.in_chans != 1 else []) + self.input_size
        return {"modality": self.modality, "raw": f"a float tensor {shape} (the model input itself)"}

    def timm_in_chans(self) -> Optional[int]:
        return self.in_chans if len(self.input_size) == 2 else None

    def card_usage(self, folder: str) -> str:
        return ""


@INPUT_ADAPTER.register(name="conv")
def build_identity_adapter(cfg) -> IdentityAdapter:
    return IdentityAdapter(cfg)


def input_adapter(cfg):
    """The INPUT_ADAPTER entry of ``cfg.MODEL.PATCH_EMBED.NAME`` built on ``cfg``; the identity
    adapter when no plugin registered one for that name (a third-party patch embedding)."""
    name = str(cfg.MODEL.PATCH_EMBED.NAME)
    if name in INPUT_ADAPTER:
        return INPUT_ADAPTER.get(name)(cfg)
    return IdentityAdapter(cfg)
