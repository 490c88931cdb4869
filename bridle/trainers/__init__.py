"""Registered TRAINER entries. Each module registers itself on import."""
import importlib

for _mod in ("pretrain", "schedule", "finetune"):
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _e:  # a module not written yet in a partial checkout
        if _e.name != f"{__name__}.{_mod}":
            raise
