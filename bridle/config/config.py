"""Config node: fvcore's CfgNode (``_BASE_`` inheritance) with errors that name the
file and suggest the nearest valid keys."""

import difflib
import os
import re
from collections.abc import Mapping
from typing import Any, Dict

from fvcore.common.config import CfgNode as _FvCfgNode

from bridle.errors import MissingFileError, UserError


class ConfigError(KeyError, UserError):
    """An unknown config key (a user error: one line, naming the key and the nearest valid ones)."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class ConfigValueError(UserError, ValueError):
    """One or more config values are out of range or of the wrong type; the message lists each key."""


_TYPE_MISMATCH = re.compile(
    r"Type mismatch \(<class '(?P<want>[\w.]+)'> vs\. <class '(?P<got>[\w.]+)'>\) with values "
    r"\((?P<default>.*) vs\. (?P<value>.*)\) for config key: (?P<key>\S+)$",
    re.S,
)
_TYPE_NAMES = {
    "float": "a number",
    "int": "an integer",
    "str": "a string",
    "bool": "True or False",
    "list": "a list",
    "tuple": "a list",
    "NoneType": "None",
}


def _type_error(exc: Exception, source: str) -> Exception:
    """yacs' "Type mismatch (<class 'float'> vs. <class 'str'>) ..." as 'KEY = value in SOURCE:
    expected a number (the default is ...)'; other errors unchanged."""
    m = _TYPE_MISMATCH.match(str(exc.args[0]) if exc.args else "")
    if not m:
        return exc
    want = m.group("want").rsplit(".", 1)[-1]
    expected = _TYPE_NAMES.get(want, "a mapping of keys" if want == "CfgNode" else f"a {want}")
    return ConfigValueError(
        f"{m.group('key')} = {m.group('value')!r} in {source}: expected {expected} "
        f"(like the default {m.group('default')})."
    )


def flatten_cfg(node: Mapping, prefix: str = "") -> Dict[str, Any]:
    """``{"A.B.C": value}`` for every leaf of a config node, or of any nested mapping (a
    config loaded as plain YAML), in the node's order; an empty sub-node has no key."""
    out: Dict[str, Any] = {}
    for k, v in node.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_cfg(v, key + "."))
        else:
            out[key] = v
    return out


def _missing_namespace(cfg, key: str, file_value_is_node: bool = False) -> str:
    """The first component path of ``key`` that ``cfg`` lacks, when that component is a
    node (more components follow, or the file gives it a mapping); else ''."""
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts):
        if not isinstance(node, _FvCfgNode) or part not in node:
            if i < len(parts) - 1 or file_value_is_node:
                return ".".join(parts[: i + 1])
            return ""
        node = node[part]
    return ""


def _plugin_hint(namespace: str) -> str:
    import os

    from bridle.plugins import ENV_VAR, available_plugins, loaded_plugins

    loaded = sorted(loaded_plugins())
    installed = sorted(available_plugins())
    env = os.environ.get(ENV_VAR)
    chosen = f"{ENV_VAR}={env!r}" if env is not None else f"{ENV_VAR} unset: all installed are loaded"
    return (
        f" No loaded plugin declares the namespace '{namespace}'. Plugins loaded: {loaded or 'none'}"
        f" (installed: {installed or 'none'}; {chosen}). A plugin declares its keys in "
        "add_config(cfg), defined in its entry-point module or its 'config' submodule; check "
        f"that the plugin is installed (pip install -e ...), listed in {ENV_VAR}, and that its "
        "add_config creates this node."
    )


def _file_value_is_node(cfg_filename: str, key: str) -> bool:
    try:
        import yaml

        with open(cfg_filename) as f:
            node = yaml.safe_load(f)
        for part in key.split("."):
            node = node[part]
        return isinstance(node, dict)
    except Exception:
        return False


def _unknown_key_error(cfg, exc: Exception, source: str, cfg_filename: str = "") -> ConfigError:
    msg = str(exc.args[0]) if exc.args else str(exc)
    bad = msg.split(":")[-1].strip()
    valid = list(flatten_cfg(cfg))
    close = difflib.get_close_matches(bad, valid, n=5, cutoff=0.5)
    if not close:  # fall back to keys sharing the last component
        last = bad.split(".")[-1]
        close = [k for k in valid if k.split(".")[-1] == last][:5]
    hint = f" Nearest valid keys: {', '.join(close)}." if close else ""
    namespace = _missing_namespace(cfg, bad, bool(cfg_filename) and _file_value_is_node(cfg_filename, bad))
    if namespace:
        hint += _plugin_hint(namespace)
    return ConfigError(f"Unknown config key '{bad}' in {source}.{hint}")


class CfgNode(_FvCfgNode):
    """The config of a run. Plugins add their keys before any file is merged."""

    def _ints_as_floats(self, cfg_list: list) -> list:
        """``SOLVER.BASE_LR 1`` means 1.0: an integer given for a float key becomes a float
        (yacs would refuse it as a type mismatch)."""
        from ast import literal_eval

        out = list(cfg_list)
        for i in range(0, len(out) - 1, 2):
            node, parts = self, str(out[i]).split(".")
            for part in parts:
                node = node.get(part) if isinstance(node, dict) else None
            value = out[i + 1]
            if isinstance(node, float) and isinstance(value, str):
                try:
                    parsed = literal_eval(value)
                except (ValueError, SyntaxError):
                    continue
                if isinstance(parsed, int) and not isinstance(parsed, bool):
                    out[i + 1] = repr(float(parsed))
        return out

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        import yaml

        if not os.path.isfile(cfg_filename):
            what = "is a directory, not a config file" if os.path.isdir(cfg_filename) else "does not exist"
            raise MissingFileError(f"Config file '{cfg_filename}' {what}.")
        try:
            super().merge_from_file(cfg_filename, allow_unsafe=allow_unsafe)
        except (KeyError, AssertionError) as e:
            if isinstance(e, ConfigError):
                raise
            if "Non-existent" in str(e):
                raise _unknown_key_error(self, e, f"config file '{cfg_filename}'", cfg_filename) from None
            raise ConfigValueError(f"In config file '{cfg_filename}': {e.args[0] if e.args else e}") from None
        except FileNotFoundError as e:  # a _BASE_ file
            missing = e.filename or str(e)
            raise MissingFileError(
                f"_BASE_ '{missing}' of config file '{cfg_filename}' does not exist "
                "(expected a path relative to the file that names it, or an absolute one)."
            ) from None
        except yaml.YAMLError as e:
            detail = " ".join(str(e).split())
            raise ConfigValueError(f"Config file '{cfg_filename}' is not valid YAML: {detail}") from None
        except (TypeError, AttributeError) as e:  # e.g. a file whose top level is not a mapping
            raise ConfigValueError(
                f"Config file '{cfg_filename}' cannot be read as a config ({e}); expected a YAML mapping of KEY: value."
            ) from None
        except ValueError as e:
            if isinstance(e, UserError):
                raise
            err = _type_error(e, f"config file '{cfg_filename}'")
            if err is not e:
                raise err from None
            raise ConfigValueError(f"In config file '{cfg_filename}': {e}") from None

    def merge_from_list(self, cfg_list: list) -> "CfgNode":
        if len(cfg_list) % 2 != 0:
            raise ConfigValueError(f"Command-line overrides must be KEY VALUE pairs; got an odd number: {cfg_list}")
        try:
            super().merge_from_list(self._ints_as_floats(cfg_list))
        except (KeyError, AssertionError) as e:
            if "Non-existent" in str(e):
                raise _unknown_key_error(self, e, "command-line overrides") from None
            raise
        except ValueError as e:
            err = _type_error(e, "command-line overrides")
            if err is not e:
                raise err from None
            raise
        return self
