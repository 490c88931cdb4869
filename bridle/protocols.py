"""Typed contracts of the components that Bridle's registries build (see docs/DESIGN.md,
"Contracts").

Each component has one *required* protocol (what the core always uses) and small *optional*
capability protocols (what the core uses when a component provides it, and does without
otherwise). The registry builders check the required protocol when they build an entry
(:func:`check_contract`, naming the entry and the plugin that registered it); the core asks
for an optional capability with :func:`supports`.

Members are checked by name on the object itself (``getattr``, so attributes set in
``__init__``, properties and ``nn.Module`` submodules all count); a member declared as a method
must be callable (a ``device_transform`` property that returns None does not count).
"""

from typing import Any, Dict, Iterable, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

import torch

__all__ = [
    "StateDict",
    # checking
    "protocol_members",
    "missing_members",
    "supports",
    "check_contract",
    # dataset
    "Dataset",
    "DeviceTransform",
    "ResumablePosition",
    "NamesBadItems",
    "ReportsLastFailure",
    "ReportsFailedKeys",
    "SampleWeights",
    "ClassCount",
    "PrimedDecoder",
    # quantizer
    "QuantizerClass",
    "Quantizer",
    "InitializableCodebook",
    "CodebookState",
    "BookkeepingState",
    # backbone
    "Backbone",
    "PatchCount",
    # trainer
    "Trainer",
    "RunnableTrainer",
    "ChecksFinite",
    "StateFiniteness",
    "PerRankState",
    "DataAccounting",
]

#: A module's (or checkpoint's) tensors by state-dict key.
StateDict = Dict[str, torch.Tensor]

# Dunder members a protocol may require (every other ``_``-name of a Protocol class is typing's
# own machinery).
_DUNDER_MEMBERS = ("__len__", "__getitem__", "__iter__", "__call__")
_TYPING_NAMES = {"Protocol", "Generic", "object"}


def protocol_members(proto: type) -> List[Tuple[str, bool]]:
    """``(name, is_method)`` of every member ``proto`` declares, its protocol bases' first, in
    declaration order: annotated attributes (``is_method`` False) and methods (True)."""
    out: Dict[str, bool] = {}
    for base in reversed(proto.__mro__):
        if base.__name__ in _TYPING_NAMES or not getattr(base, "_is_protocol", False):
            continue
        for name in base.__dict__.get("__annotations__", {}):
            if not name.startswith("_"):
                out[name] = False
        for name, value in base.__dict__.items():
            if name.startswith("_") and name not in _DUNDER_MEMBERS:
                continue
            if isinstance(value, property):
                out[name] = False
            elif callable(value) or isinstance(value, (classmethod, staticmethod)):
                out[name] = True
    return list(out.items())


_MISSING = object()


def missing_members(obj: Any, proto: type) -> List[str]:
    """The members of ``proto`` that ``obj`` lacks (a method member must be callable)."""
    lacks = []
    for name, is_method in protocol_members(proto):
        try:
            value = getattr(obj, name, _MISSING)
        except Exception:  # a property that raises: not provided
            value = _MISSING
        if value is _MISSING or (is_method and not callable(value)):
            lacks.append(name)
    return lacks


def supports(obj: Any, capability: type) -> bool:
    """Whether ``obj`` provides every member of the (optional) capability protocol."""
    return obj is not None and not missing_members(obj, capability)


def check_contract(obj: Any, proto: type, where: str, lacks: Sequence[str] = ()) -> Any:
    """``obj`` unchanged if it has every member of ``proto``; else raise a TypeError
    ``"<where> built <Type>, which lacks [...], required by bridle.protocols.<Proto>"``.
    ``where`` names the registry entry and its plugin (:meth:`bridle.registry.Registry.label`);
    ``lacks`` adds members found wanting by a finer check of the caller (e.g. not an int)."""
    names = list(dict.fromkeys(list(missing_members(obj, proto)) + list(lacks)))
    if names:
        raise TypeError(
            f"{where} built {type(obj).__name__}, which lacks {names}, required by "
            f"{proto.__module__}.{proto.__qualname__}."
        )
    return obj


# --------------------------------------------------------------------------- dataset
@runtime_checkable
class Dataset(Protocol):
    """Required of what a DATASET entry ``fn(cfg, split, mode)`` returns: a torch Dataset
    (map-style, or an IterableDataset that orders, splits and resumes itself) with an int
    ``__len__``. Items are dicts with ``'input'`` (and optionally ``'label'``); an unreadable
    item is returned as None."""

    def __len__(self) -> int: ...


@runtime_checkable
class DeviceTransform(Protocol):
    """Optional: turns a collated batch into model inputs on the device (applied after the
    move to the device, before INPUT.BATCH_TRANSFORMS, in every mode)."""

    def device_transform(self, batch: dict) -> dict: ...


@runtime_checkable
class ResumablePosition(Protocol):
    """Optional (streaming datasets): skip what this rank already consumed on resume."""

    def set_start(self, consumed: int, batch_size: int) -> None: ...


@runtime_checkable
class NamesBadItems(Protocol):
    """Optional (streaming datasets): when set, an unreadable sample is returned as a
    ``BadItem`` naming it instead of None."""

    name_bad_items: bool


@runtime_checkable
class ReportsLastFailure(Protocol):
    """Optional: ``(key, "ErrorType: message")`` of the latest unreadable item, or None; the
    loader resets it before each item and names the skipped item with it."""

    last_failure: Optional[Tuple[Any, str]]


@runtime_checkable
class ReportsFailedKeys(Protocol):
    """Optional: (the first) keys of the items that could not be read, for error reports."""

    failed_keys: List[Any]


@runtime_checkable
class PrimedDecoder(Protocol):
    """Optional (a SAMPLE_DECODER of the "shards" dataset whose item depends on the sample before
    it in its loader slot's stream, e.g. a mixup partner taken from the stream): ``prime(sample)``
    hands it that previous raw sample (None: missing from its shard) where the decoder did not
    see it itself, i.e. a resumed stream's first sample and after a missing sample, so a resumed
    run decodes every item as an uninterrupted one."""

    def prime(self, sample: Optional[Dict[str, bytes]]) -> None: ...


@runtime_checkable
class SampleWeights(Protocol):
    """Optional: one weight per item, for DATALOADER.SAMPLER_TRAIN 'WeightedSampler'."""

    def sample_weights(self) -> Sequence[float]: ...


@runtime_checkable
class ClassCount(Protocol):
    """Optional: the number of classes of a labelled dataset (checked against the head)."""

    num_classes: int


# --------------------------------------------------------------------------- quantizer
@runtime_checkable
class QuantizerClass(Protocol):
    """Required of a QUANTIZER entry (the registered class): the core builds it as
    ``cls.from_config(cfg.MODEL.QUANTIZER)``."""

    def from_config(self, qcfg: Any) -> "Quantizer": ...


@runtime_checkable
class Quantizer(Protocol):
    """Required of a built quantizer (an ``nn.Module``): int ``num_levels``, ``codebook_size``,
    ``code_dim`` (= MODEL.QUANTIZER.CODE_DIM) and ``forward(z [B, N, code_dim])`` returning a
    ``bridle.modeling.quantizers.QuantizerOutput`` (codes long ``[B, N, num_levels]``)."""

    num_levels: int
    codebook_size: int
    code_dim: int

    def forward(self, z: torch.Tensor) -> Any: ...


@runtime_checkable
class InitializableCodebook(Protocol):
    """Optional: a codebook initialised from data (k-means) before a frozen tokenizer's first
    target; a quantizer without it needs no initialisation."""

    def is_initialized(self) -> bool: ...

    def init_codebook(self, z: torch.Tensor) -> None: ...


@runtime_checkable
class CodebookState(Protocol):
    """Optional: the state-dict keys (relative to the quantizer) a new tokenizer phase
    re-initialises instead of loading; without it every tensor is handed over."""

    def codebook_state_keys(self) -> Iterable[str]: ...


@runtime_checkable
class BookkeepingState(Protocol):
    """Optional: state-dict keys of training bookkeeping (e.g. a usage window), restored on
    resume but started afresh by a new phase."""

    def bookkeeping_state_keys(self) -> Iterable[str]: ...


# --------------------------------------------------------------------------- backbone
@runtime_checkable
class Backbone(Protocol):
    """Required of what a BACKBONE entry ``fn(cfg, node)`` returns (an ``nn.Module``):
    ``grid_size`` (tuple), ints ``embed_dim`` and ``depth``, ``layer_id(param_name) -> int``
    (0 = embeddings, i + 1 = block i, depth + 1 = the rest) and ``forward(x, ids_keep=None)``
    -> tokens ``[B, 1 + M, D]`` (cls first, after the final norm)."""

    grid_size: Tuple[int, ...]
    embed_dim: int
    depth: int

    def layer_id(self, name: str) -> int: ...

    def forward(self, x: torch.Tensor, ids_keep: Optional[torch.Tensor] = None) -> torch.Tensor: ...


@runtime_checkable
class PatchCount(Protocol):
    """Optional: ``num_patches``; when present it must equal prod(grid_size)."""

    num_patches: int


# --------------------------------------------------------------------------- trainer
@runtime_checkable
class Trainer(Protocol):
    """Required of a trainer by the hooks and the checkpointer: the iteration counters, the
    event storage and its own state for checkpoints."""

    iter: int
    start_iter: int
    max_iter: int
    storage: Any

    def train(self) -> Any: ...

    def state_dict(self) -> Dict[str, Any]: ...

    def load_state_dict(self, state: Dict[str, Any]) -> None: ...


@runtime_checkable
class RunnableTrainer(Protocol):
    """Required of a TRAINER entry (a class, ``cls(cfg)``): what tools/train_net.py calls."""

    def resume_or_load(self, resume: bool = True) -> None: ...

    def train(self) -> Any: ...

    def eval_only(self, cfg: Any) -> Any: ...


@runtime_checkable
class ChecksFinite(Protocol):
    """Optional: raise if a non-finite loss was counted (read at log / checkpoint boundaries)."""

    def check_finite(self) -> None: ...


@runtime_checkable
class StateFiniteness(Protocol):
    """Optional: whether the parameters and optimizer state are all finite (before a save)."""

    def state_is_finite(self) -> bool: ...


@runtime_checkable
class PerRankState(Protocol):
    """Optional: this rank's data position and bad-item counts, gathered into checkpoints."""

    def rank_state(self) -> Dict[str, Any]: ...


@runtime_checkable
class DataAccounting(Protocol):
    """Optional: unreadable items skipped by this rank so far (logged summed over ranks)."""

    data_bad: int
