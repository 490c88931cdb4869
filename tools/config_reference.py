#!/usr/bin/env python
"""Print the config reference (every key, default and comment) as Markdown.

Core keys come from bridle/config/defaults.py; plugin keys from each loaded plugin's
``add_config`` source (the comment above each assignment).
"""
import ast
import inspect
import re
import sys

from bridle.config import get_cfg
from bridle.config import defaults as core_defaults
from bridle.plugins import load_plugins


def _comments(source: str) -> dict:
    """key path -> comment, from '# comment' lines right above (or at the end of)
    'X.KEY = value' assignments. Local aliases (``a = CN()`` ... ``cfg.INPUT.A = a``) resolve."""
    raw, aliases, pending = [], {}, []
    for line in source.splitlines():
        s = line.strip()
        if s.startswith("#"):
            pending.append(s.lstrip("#").strip(" -"))
            continue
        m = re.match(r"^([\w\.]+)\s*=\s*(.+?)(\s+#\s*(.*))?$", s)
        if m:
            lhs, rhs = m.group(1), m.group(2).strip()
            if re.fullmatch(r"[a-z_]\w*", rhs) and "." in lhs:
                aliases[rhs] = lhs  # cfg.INPUT.A = a, or a.SUB = b
            elif "CN()" not in rhs:
                comment = (m.group(4) or " ".join(p for p in pending if p)).strip()
                if comment:
                    raw.append((lhs, comment))
        pending = []
    def resolve(path: str, depth: int = 0) -> str:
        head, _, rest = path.partition(".")
        if head in ("cfg", "_C") or depth > 10:
            return rest
        if head in aliases:
            return f"{resolve(aliases[head], depth + 1)}.{rest}"
        return path

    out = {}
    for lhs, comment in raw:
        head, _, rest = lhs.partition(".")
        if head in ("cfg", "_C"):
            out[rest] = comment
        elif head == "_p":  # the per-phase node built in a loop in defaults.py
            out[f"PRETRAIN.PHASES.<PHASE>.{rest}"] = comment
        elif head in aliases:
            out[resolve(lhs)] = comment
    return out


def flat(node, prefix=""):
    for k, v in node.items():
        if hasattr(v, "items"):
            yield from flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def main() -> None:
    cfg = get_cfg()
    comments = _comments(inspect.getsource(core_defaults))
    for name, mod in sorted(load_plugins().items()):
        add = getattr(mod, "add_config", None)
        if add is not None:
            comments.update(_comments(inspect.getsource(inspect.getmodule(add))))
    print("| key | default | meaning |\n|---|---|---|")
    for key, value in flat(cfg):
        if key.startswith("PRETRAIN.PHASES.") and not key.startswith("PRETRAIN.PHASES.ENCODER_COLD"):
            continue
        c = comments.get(key, "")
        if key.startswith("PRETRAIN.PHASES.ENCODER_COLD."):
            key = "PRETRAIN.PHASES.<PHASE>." + key.split(".")[-1]
            c = comments.get(key, "")
        print(f"| `{key}` | `{value!r}` | {c} |")


if __name__ == "__main__":
    sys.exit(main())
