"""Config node: fvcore's CfgNode (``_BASE_`` inheritance) with errors that name the
file and suggest the nearest valid keys."""
import difflib
from typing import List

from fvcore.common.config import CfgNode as _FvCfgNode


class ConfigError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


def _flat_keys(node, prefix: str = "") -> List[str]:
    keys = []
    for k, v in node.items():
        full = f"{prefix}{k}"
        if isinstance(v, _FvCfgNode):
            keys.extend(_flat_keys(v, full + "."))
        else:
            keys.append(full)
    return keys


def _unknown_key_error(cfg, exc: Exception, source: str) -> ConfigError:
    msg = str(exc.args[0]) if exc.args else str(exc)
    bad = msg.split(":")[-1].strip()
    valid = _flat_keys(cfg)
    close = difflib.get_close_matches(bad, valid, n=5, cutoff=0.5)
    if not close:  # fall back to keys sharing the last component
        last = bad.split(".")[-1]
        close = [k for k in valid if k.split(".")[-1] == last][:5]
    hint = f" Nearest valid keys: {', '.join(close)}." if close else ""
    return ConfigError(f"Unknown config key '{bad}' in {source}.{hint}")


class CfgNode(_FvCfgNode):
    """The config of a run. Plugins add their keys before any file is merged."""

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        import os

        if not os.path.isfile(cfg_filename):
            raise FileNotFoundError(f"Config file '{cfg_filename}' does not exist.")
        try:
            super().merge_from_file(cfg_filename, allow_unsafe=allow_unsafe)
        except (KeyError, AssertionError) as e:
            if "Non-existent" in str(e):
                raise _unknown_key_error(self, e, f"config file '{cfg_filename}'") from None
            raise
        except ValueError as e:
            raise ValueError(f"In config file '{cfg_filename}': {e}") from None

    def merge_from_list(self, cfg_list: list) -> "CfgNode":
        if len(cfg_list) % 2 != 0:
            raise ValueError(
                f"Command-line overrides must be KEY VALUE pairs; got an odd number: {cfg_list}"
            )
        try:
            super().merge_from_list(cfg_list)
        except (KeyError, AssertionError) as e:
            if "Non-existent" in str(e):
                raise _unknown_key_error(self, e, "command-line overrides") from None
            raise
        return self
