"""Every registry of Bridle, in one place.

A registry maps a name (used in configs) to a class or builder function. Plugins
add entries on import; ``tools/train_net.py --list`` prints them all with the
package that registered each.

Contracts (what an entry must look like) are documented next to each registry; the typed
ones (required members and optional capabilities) are in :mod:`bridle.protocols`, checked when
an entry is built.
"""

import difflib
import importlib
import sys
from typing import Any, Dict, Optional, Sequence

from fvcore.common.registry import Registry as _FvRegistry

from bridle.errors import UserError

__all__ = [
    "Registry",
    "ALL_REGISTRIES",
    "BACKBONE",
    "PATCH_EMBED",
    "MASK_GENERATOR",
    "QUANTIZER",
    "META_ARCH",
    "HEAD",
    "TRAINER",
    "DATASET",
    "TRANSFORM",
    "SAMPLER",
    "EVALUATOR",
    "SAMPLE_DECODER",
    "SHARD_SOURCE",
]


class UnknownEntryError(KeyError, UserError):
    """A name (from a config) that no registry entry has; the message lists the registered ones."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class Registry(_FvRegistry):
    _instances: list = []  # every registry created (core, plugins' own), for --list

    """fvcore's registry with explicit names, origin tracking and a KeyError that
    suggests the closest registered names.

    ``core_modules`` are the core modules that register this registry's built-in entries;
    they are imported on the first lookup (``get``, ``names``, ``in``), so no package has to
    import them for their side effect (e.g. ``bridle.config`` never imports the trainers)."""

    def __init__(self, name: str, doc: str = "", core_modules: Sequence[str] = ()) -> None:
        super().__init__(name)
        self.doc = doc
        self._origin: Dict[str, str] = {}
        self._core_modules = tuple(core_modules)
        Registry._instances.append(self)

    def _import_core(self) -> None:
        if self._core_modules:
            mods, self._core_modules = self._core_modules, ()  # () first: no re-entry while importing
            try:
                for m in mods:
                    importlib.import_module(m)
            except BaseException:
                self._core_modules = mods  # a failed import is retried (and raises) on the next lookup
                raise

    def register(self, obj: Any = None, *, name: Optional[str] = None) -> Any:
        if obj is None:

            def deco(fn: Any) -> Any:
                self._register_named(name or fn.__name__, fn)
                return fn

            return deco
        self._register_named(name or obj.__name__, obj)
        return obj

    def _register_named(self, name: str, obj: Any) -> None:
        if name in self._obj_map and self._obj_map[name] is obj:
            return  # re-import of the same module: idempotent
        self._do_register(name, obj)
        self._origin[name] = _origin_of(obj)

    def get(self, name: str) -> Any:
        self._import_core()
        if name not in self._obj_map:
            close = difflib.get_close_matches(str(name), list(self._obj_map), n=3, cutoff=0.4)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise UnknownEntryError(
                f"No entry named '{name}' in registry {self._name}.{hint} "
                f"Registered: {sorted(self._obj_map) or 'none'}. "
                "Is the plugin that provides it installed and loaded (see BRIDLE_PLUGINS)?"
            )
        return self._obj_map[name]

    def origin(self, name: str) -> str:
        return self._origin.get(name, "?")

    def label(self, name: str, context: str = "") -> str:
        """How an error names an entry and the package that registered it, e.g.
        ``QUANTIZER entry 'rq' (MODEL.QUANTIZER.NAME, registered by bridle)``; ``context`` is
        the config key (or call) that picked the entry."""
        ctx = f"{context}, " if context else ""
        return f"{self._name} entry '{name}' ({ctx}registered by {self.origin(name)})"

    def names(self):
        self._import_core()
        return sorted(self._obj_map)

    def __contains__(self, name: str) -> bool:
        self._import_core()
        return name in self._obj_map

    def __iter__(self):
        self._import_core()
        return iter(self._obj_map.items())


def _origin_of(obj: Any) -> str:
    """The top-level package an object was defined in (``bridle`` or a plugin package)."""
    module = getattr(obj, "__module__", None) or "?"
    return module.split(".")[0]


BACKBONE = Registry(
    "BACKBONE",
    "fn(cfg, node) -> nn.Module, node = cfg.MODEL.ENCODER or cfg.MODEL.TOKENIZER (its NAME picks the "
    "entry); forward(x, ids_keep=None) -> tokens [B, 1 + M, D] (cls first, after the final norm); "
    "attributes .grid_size, .embed_dim, .depth and layer_id(param_name) -> int.",
    core_modules=("bridle.modeling",),
)
PATCH_EMBED = Registry(
    "PATCH_EMBED",
    "fn(cfg, embed_dim) -> nn.Module with .grid_size (tuple) and .num_patches; "
    "forward(x [B, *input]) -> tokens [B, N, embed_dim] in row-major grid order.",
    core_modules=("bridle.modeling",),
)
MASK_GENERATOR = Registry(
    "MASK_GENERATOR",
    "fn(cfg, grid_size) -> gen with .num_masked; gen(batch_size, device=None, generator=None) -> "
    "bool [B, N] (True = masked), exactly .num_masked True per row.",
    core_modules=("bridle.modeling",),
)
QUANTIZER = Registry(
    "QUANTIZER",
    "cls with from_config(cfg.MODEL.QUANTIZER) -> nn.Module with .num_levels, .codebook_size, "
    ".code_dim; forward(z [B, N, code_dim]) -> QuantizerOutput (codes long [B, N, num_levels]).",
    core_modules=("bridle.modeling",),
)
META_ARCH = Registry(
    "META_ARCH",
    "cls(cfg, phase) -> pretraining model (MODEL.META_ARCHITECTURE, a BridleModel subclass); "
    "cls(cfg) -> downstream model (MODEL.DOWNSTREAM_ARCHITECTURE); forward(batch dict) -> dict of "
    "losses in training mode.",
    core_modules=("bridle.modeling.bridle_model", "bridle.modeling.classifier"),
)
HEAD = Registry(
    "HEAD",
    "fn(cfg, in_dim, num_classes) -> nn.Module mapping pooled features [B, in_dim] to logits "
    "[B, num_classes] (MODEL.HEAD.NAME).",
    core_modules=("bridle.modeling.classifier",),
)
TRAINER = Registry(
    "TRAINER",
    "a bridle.engine.DefaultTrainer subclass: cls(cfg), .resume_or_load(resume), .train(), "
    "classmethod eval_only(cfg) (TRAINER.NAME).",
    core_modules=("bridle.trainers",),
)
DATASET = Registry(
    "DATASET",
    "fn(cfg, split, mode) -> torch Dataset with an int __len__; split: train|val|test, mode: "
    "pretrain|finetune|linear_probe|eval; items are dicts with 'input' (float tensor) and "
    "optionally 'label'; an item that cannot be read is returned as None.",
    core_modules=("bridle.data.shards",),
)
SAMPLE_DECODER = Registry(
    "SAMPLE_DECODER",
    "fn(cfg, mode, meta) -> callable(sample) -> item dict (or None if unreadable); sample: one "
    "WebDataset sample {'__key__': str, '<ext>': bytes, ...} of a 'shards' dataset, meta: the "
    "shard index's 'meta' dict. A plugin's own decode + transform of its shard format.",
    core_modules=("bridle.data.shards",),
)
SHARD_SOURCE = Registry(
    "SHARD_SOURCE",
    "cls() -> source of tools/make_shards.py (bridle.data.shards.ShardSource): .flag (its option, "
    "e.g. '--dataset'; one source per run), add_arguments(parser) for its own options; then either "
    "jobs(args) -> (jobs [(index, path, label dict)], meta, SAMPLE_DECODER name) with "
    "encoder(args) -> picklable fn(job) -> {ext: bytes} (raising for an unreadable file), or "
    "write(args) -> index.json path for a source that writes its shards itself.",
    core_modules=("bridle.data.shards",),
)
TRANSFORM = Registry(
    "TRANSFORM",
    "fn(cfg, mode) -> callable(batch dict) -> batch dict. Names listed in INPUT.BATCH_TRANSFORMS "
    "are applied on the device to training batches by the 'finetune' trainer only.",
)
SAMPLER = Registry(
    "SAMPLER",
    "fn(cfg, dataset, start_index) -> torch Sampler yielding indices for this rank forever.",
    core_modules=("bridle.data",),
)
EVALUATOR = Registry(
    "EVALUATOR",
    "fn(cfg) -> evaluator with reset(), process(logits [B, C], batch), evaluate() -> dict, .primary_metric.",
    core_modules=("bridle.evaluation",),
)

ALL_REGISTRIES = {
    r._name: r
    for r in [
        BACKBONE,
        PATCH_EMBED,
        MASK_GENERATOR,
        QUANTIZER,
        META_ARCH,
        HEAD,
        TRAINER,
        DATASET,
        TRANSFORM,
        SAMPLER,
        EVALUATOR,
        SAMPLE_DECODER,
        SHARD_SOURCE,
    ]
}


def format_registries() -> str:
    """A human-readable table of every registry with its entries and their origin."""
    lines = []
    for reg in ALL_REGISTRIES.values():
        reg.names()  # imports the core modules, which may define registries of their own
    others = [r for r in Registry._instances if r not in ALL_REGISTRIES.values() and r.doc]
    for name, reg in list(ALL_REGISTRIES.items()) + [(r._name, r) for r in others]:
        lines.append(f"{name}  ({reg.doc})")
        if not reg.names():
            lines.append("    (empty)")
        for entry in reg.names():
            lines.append(f"    {entry:<28} [{reg.origin(entry)}]")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(format_registries(), file=sys.stdout)
