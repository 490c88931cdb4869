from .config import CfgNode, ConfigError
from .defaults import _C


def get_cfg(load_plugins: bool = True) -> CfgNode:
    """Core defaults plus the keys of every loaded plugin (their ``add_config``)."""
    import bridle.trainers  # noqa: F401  (registers the core trainers)

    cfg = _C.clone()
    if load_plugins:
        from bridle.plugins import load_plugins as _load

        for name, module in sorted(_load().items()):
            add = getattr(module, "add_config", None)
            if add is not None:
                add(cfg)
    return cfg


__all__ = ["CfgNode", "ConfigError", "get_cfg"]
