"""Every registry of Bridle, in one place.

A registry maps a name (used in configs) to a class or builder function. Plugins
add entries on import; ``tools/train_net.py --list`` prints them all with the
package that registered each.

Contracts (what an entry must look like) are documented next to each registry.
"""
import difflib
import sys
from typing import Any, Dict, Optional

from fvcore.common.registry import Registry as _FvRegistry

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
]


class Registry(_FvRegistry):
    """fvcore's registry with explicit names, origin tracking and a KeyError that
    suggests the closest registered names."""

    def __init__(self, name: str, doc: str = "") -> None:
        super().__init__(name)
        self.doc = doc
        self._origin: Dict[str, str] = {}

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
        if name not in self._obj_map:
            close = difflib.get_close_matches(str(name), list(self._obj_map), n=3, cutoff=0.4)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise KeyError(
                f"No entry named '{name}' in registry {self._name}.{hint} "
                f"Registered: {sorted(self._obj_map) or 'none'}. "
                "Is the plugin that provides it installed and loaded (see BRIDLE_PLUGINS)?"
            )
        return self._obj_map[name]

    def origin(self, name: str) -> str:
        return self._origin.get(name, "?")

    def names(self):
        return sorted(self._obj_map)


def _origin_of(obj: Any) -> str:
    """The top-level package an object was defined in (``bridle`` or a plugin package)."""
    module = getattr(obj, "__module__", None) or "?"
    return module.split(".")[0]


BACKBONE = Registry(
    "BACKBONE",
    "cls.from_config(cfg) -> nn.Module; encoders (ViT) over patch tokens.",
)
PATCH_EMBED = Registry(
    "PATCH_EMBED",
    "fn(cfg, embed_dim) -> nn.Module with .grid_size (tuple) and .num_patches; "
    "forward(x [B, *input]) -> tokens [B, N, embed_dim] in row-major grid order.",
)
MASK_GENERATOR = Registry(
    "MASK_GENERATOR",
    "fn(cfg, grid_size) -> callable(batch_size, device) -> bool [B, N] (True = masked), "
    "the same number of masked tokens in every row (attribute .num_masked).",
)
QUANTIZER = Registry(
    "QUANTIZER",
    "cls.from_config(cfg.MODEL.QUANTIZER) -> nn.Module; forward(z [B, N, D]) -> QuantizerOutput.",
)
META_ARCH = Registry(
    "META_ARCH",
    "cls(cfg) -> nn.Module whose forward(batch dict) returns a dict of losses in training "
    "and predictions in eval mode.",
)
HEAD = Registry("HEAD", "fn(cfg, in_dim, num_classes) -> nn.Module; classification heads.")
TRAINER = Registry(
    "TRAINER",
    "a bridle.engine.DefaultTrainer subclass (or a runner with the same build/train API).",
)
DATASET = Registry(
    "DATASET",
    "fn(cfg, split: str, mode: str) -> torch Dataset (mode: pretrain|finetune|linear_probe|eval); "
    "items are dicts with 'input' "
    "(tensor) and optionally 'label'; an item that cannot be read is returned as None.",
)
TRANSFORM = Registry(
    "TRANSFORM",
    "fn(cfg, mode) -> callable. Names listed in INPUT.BATCH_TRANSFORMS are applied by "
    "fine-tuning trainers to the whole batch (dict -> dict) on the device, in training steps.",
)
SAMPLER = Registry(
    "SAMPLER",
    "fn(cfg, dataset, start_index) -> torch Sampler yielding indices for this rank forever.",
)
EVALUATOR = Registry(
    "EVALUATOR",
    "fn(cfg) -> evaluator with reset(), process(outputs, batch), evaluate() -> dict.",
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
    ]
}


def format_registries() -> str:
    """A human-readable table of every registry with its entries and their origin."""
    lines = []
    for name, reg in ALL_REGISTRIES.items():
        lines.append(f"{name}  ({reg.doc})")
        if not reg.names():
            lines.append("    (empty)")
        for entry in reg.names():
            lines.append(f"    {entry:<28} [{reg.origin(entry)}]")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(format_registries(), file=sys.stdout)
