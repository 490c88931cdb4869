"""Discovery of modality plugins through the ``bridle.plugins`` entry-point group.

A plugin is any installed package that declares, e.g. in its setup.py::

    entry_points={"bridle.plugins": ["mymodality = my_package"]}

Importing the package registers its components (patch embedders, mask generators,
datasets, transforms, ...). ``add_config(cfg)``, defined in the entry-point module or in its
``config`` submodule (``my_package/config.py``), is called by :func:`bridle.config.get_cfg`
to declare the plugin's config keys.

The environment variable ``BRIDLE_PLUGINS`` chooses what is loaded: unset or ``all``
loads every installed plugin, ``a,b`` only plugins a and b, ``none`` nothing.
"""

import importlib
import importlib.util
import logging
import os
import threading
from importlib.metadata import entry_points
from types import ModuleType
from typing import Callable, Dict, List, Optional

ENTRY_POINT_GROUP = "bridle.plugins"
ENV_VAR = "BRIDLE_PLUGINS"

_loaded: Dict[str, ModuleType] = {}
_lock = threading.Lock()
_done = False

logger = logging.getLogger(__name__)


class PluginLoadError(RuntimeError):
    pass


def _selection() -> Optional[List[str]]:
    value = os.environ.get(ENV_VAR, "all").strip()
    if value.lower() in ("", "all"):
        return None
    if value.lower() == "none":
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def available_plugins() -> Dict[str, str]:
    """Installed plugins: name -> module path (whether loaded or not)."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_plugins(force: bool = False) -> Dict[str, ModuleType]:
    """Import every selected plugin once. Safe to call many times."""
    global _done
    with _lock:
        if _done and not force:
            return dict(_loaded)
        eps = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        wanted = _selection()
        if wanted is not None:
            missing = [w for w in wanted if w not in eps]
            if missing:
                raise PluginLoadError(
                    f"{ENV_VAR} asks for plugin(s) {missing} that are not installed; "
                    f"installed: {sorted(eps)}. Set {ENV_VAR}=none to load no plugin."
                )
        for name, ep in sorted(eps.items()):
            if wanted is not None and name not in wanted:
                continue
            if name in _loaded:
                continue
            try:
                _loaded[name] = ep.load()
            except Exception as e:  # re-raise naming the plugin and the switch
                raise PluginLoadError(
                    f"Bridle plugin '{name}' ({ep.value}) failed to load: {type(e).__name__}: {e}. "
                    f"Set {ENV_VAR} to a comma-separated list of plugins to load (e.g. "
                    f"{ENV_VAR}={','.join(n for n in sorted(eps) if n != name) or 'none'}) "
                    f"or {ENV_VAR}=none to disable plugin autoloading."
                ) from e
            logger.debug("loaded bridle plugin %s", name)
        _done = True
        return dict(_loaded)


def loaded_plugins() -> Dict[str, ModuleType]:
    return dict(_loaded)


def plugin_add_config(module: ModuleType) -> Optional[Callable]:
    """A plugin's ``add_config``: the entry-point module's own, else that of its ``config``
    submodule (imported here); None when it declares no keys."""
    add = getattr(module, "add_config", None)
    if add is not None:
        return add
    if not hasattr(module, "__path__"):  # a plain module has no submodules
        return None
    name = f"{module.__name__}.config"
    if importlib.util.find_spec(name) is None:
        return None
    try:
        sub = importlib.import_module(name)
    except Exception as e:
        raise PluginLoadError(
            f"Bridle plugin module '{name}' failed to import: {type(e).__name__}: {e}. "
            f"Set {ENV_VAR} to skip the plugin."
        ) from e
    return getattr(sub, "add_config", None)
