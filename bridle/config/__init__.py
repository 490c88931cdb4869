from .config import CfgNode, ConfigError
from .defaults import _C


def get_cfg(load_plugins: bool = True) -> CfgNode:
    """Core defaults plus the keys of every loaded plugin (their ``add_config``, found on the
    entry-point module or its ``config`` submodule, see :func:`bridle.plugins.plugin_add_config`).

    Importing the config package imports no trainer or model code: registries import their
    core entries on first lookup (:class:`bridle.registry.Registry`)."""
    cfg = _C.clone()
    if load_plugins:
        from bridle.plugins import load_plugins as _load
        from bridle.plugins import plugin_add_config

        for name, module in sorted(_load().items()):
            add = plugin_add_config(module)
            if add is not None:
                add(cfg)
    return cfg


__all__ = ["CfgNode", "ConfigError", "get_cfg"]
