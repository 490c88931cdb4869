from .config import CfgNode, ConfigError, flatten_cfg
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


def load_config(
    config_file: str = "", opts=(), freeze: bool = True, cfg: CfgNode = None, file_key: str = "--config-file"
) -> CfgNode:
    """The one way every tool builds a run's config: defaults (core + plugins, or ``cfg``), then
    ``config_file`` (with its ``_BASE_`` chain), then ``KEY VALUE`` ``opts``; frozen unless told.
    A missing file is a user error naming ``file_key``."""
    import os

    if config_file and not os.path.isfile(config_file):
        from bridle.errors import missing_file

        raise missing_file(file_key, config_file)
    cfg = get_cfg() if cfg is None else cfg
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts or []))
    if freeze:
        cfg.freeze()
    return cfg


__all__ = ["CfgNode", "ConfigError", "flatten_cfg", "get_cfg", "load_config"]
