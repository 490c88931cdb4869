"""The config reference (every key, its default and its comment) as a Markdown table; the
library side of tools/config_reference.py.

Core keys come from bridle/config/defaults.py; plugin keys from each loaded plugin's
``add_config`` source (the comment at the end of, or in the comment lines right above, each
assignment).
"""

import ast
import inspect
import io
import tokenize
from typing import Optional

__all__ = ["config_comments", "config_reference_markdown", "flat", "main"]

_ROOTS = ("cfg", "_C")


def _line_comments(source: str):
    """(inline comment per line, set of comment-only lines) from the token stream."""
    inline, only = {}, {}
    code_lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip(" -")
            if tok.start[0] in code_lines:
                inline[tok.start[0]] = text
            else:
                only[tok.start[0]] = text
        elif tok.type not in (
            tokenize.NL,
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
            tokenize.ENDMARKER,
            tokenize.ENCODING,
        ):
            code_lines.add(tok.start[0])
    return inline, only


def config_comments(source: str) -> dict:
    """key path -> comment, from the '# comment' at the end of (or in the comment lines right
    above) each 'X.KEY = value' assignment. Any local alias of a node resolves: ``a = CN()`` ...
    ``cfg.INPUT.A = a``; ``a = cfg.INPUT.A``; ``cfg.INPUT.A = a = CN()``; an ``add_config(c)``
    parameter of any name; ``_C.PRETRAIN.PHASES[_phase] = _p`` (-> PRETRAIN.PHASES.<PHASE>)."""
    tree = ast.parse(source)
    inline, only = _line_comments(source)
    roots = set(_ROOTS)
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name == "add_config" and fn.args.args:
            roots.add(fn.args.args[0].arg)
    aliases = {}  # local name -> (root name, [components]) of the node it stands for
    fresh = set()  # names bound to a new CN() whose place in the tree is not known yet
    leaves = []  # (root name, components, comment)

    def path(expr):
        if isinstance(expr, ast.Name):
            return (expr.id, [])
        if isinstance(expr, ast.Attribute):
            base = path(expr.value)
            return None if base is None else (base[0], base[1] + [expr.attr])
        if isinstance(expr, ast.Subscript):
            base = path(expr.value)
            key = expr.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                part = key.value
            elif isinstance(key, ast.Name):
                part = f"<{key.id.strip('_').upper()}>"
            else:
                return None
            return None if base is None else (base[0], base[1] + [part])
        return None

    def is_node_call(expr) -> bool:
        return isinstance(expr, ast.Call) and (
            (isinstance(expr.func, ast.Name) and expr.func.id in ("CN", "CfgNode"))
            or (isinstance(expr.func, ast.Attribute) and expr.func.attr == "CfgNode")
        )

    def comment_for(node) -> str:
        if node.lineno in inline:
            return inline[node.lineno]
        block, line = [], node.lineno - 1
        while line in only:
            block.insert(0, only[line])
            line -= 1
        return " ".join(b for b in block if b).strip()

    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        elif isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        else:
            continue
        named = [t.id for t in targets if isinstance(t, ast.Name)]
        placed = [path(t) for t in targets if not isinstance(t, ast.Name) and path(t) is not None]
        if is_node_call(value):
            for n in named:
                if placed:
                    aliases[n] = placed[0]
                else:
                    fresh.add(n)
            continue
        src = path(value) if isinstance(value, (ast.Name, ast.Attribute, ast.Subscript)) else None
        if src is not None and (src[0] in roots or src[0] in aliases or src[0] in fresh):
            if isinstance(value, ast.Name) and value.id in fresh and placed:
                aliases[value.id] = placed[0]  # cfg.INPUT.A = a, with a = CN() before
                fresh.discard(value.id)
                continue
            if not placed:
                for n in named:
                    aliases[n] = src  # a = cfg.INPUT.A
                continue
        comment = comment_for(node)
        if comment:
            for t in placed:
                leaves.append((t[0], t[1], comment))

    def resolve(root: str, comps, depth: int = 0):
        if root in roots:
            return comps
        if root in aliases and depth < 20:
            r, c = aliases[root]
            base = resolve(r, c, depth + 1)
            return None if base is None else base + comps
        return None

    out = {}
    for root, comps, comment in leaves:
        full = resolve(root, comps)
        if full:
            out[".".join(full)] = comment
    return out


def flat(node, prefix=""):
    for k, v in node.items():
        if hasattr(v, "items"):
            yield from flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def config_reference_markdown() -> str:
    """The table of the defaults (core and every loaded plugin), one row per key; the
    per-phase PRETRAIN.PHASES.* keys appear once as ``PRETRAIN.PHASES.<PHASE>.KEY``."""
    from bridle.config import defaults as core_defaults
    from bridle.config import get_cfg
    from bridle.plugins import load_plugins

    cfg = get_cfg()
    comments = config_comments(inspect.getsource(core_defaults))
    for name, mod in sorted(load_plugins().items()):
        add = getattr(mod, "add_config", None)
        if add is not None:
            comments.update(config_comments(inspect.getsource(inspect.getmodule(add))))
    rows = ["| key | default | meaning |\n|---|---|---|"]
    for key, value in flat(cfg):
        if key.startswith("PRETRAIN.PHASES.") and not key.startswith("PRETRAIN.PHASES.ENCODER_COLD"):
            continue
        c = comments.get(key, "")
        if key.startswith("PRETRAIN.PHASES.ENCODER_COLD."):
            key = "PRETRAIN.PHASES.<PHASE>." + key.split(".")[-1]
            c = comments.get(key, "")
        rows.append(f"| `{key}` | `{value!r}` | {c} |")
    return "\n".join(rows) + "\n"


def main(out: Optional[str] = None) -> None:
    """Write the table to ``out`` (a path), or print it when ``out`` is None."""
    text = config_reference_markdown()
    if out is None:
        print(text, end="")
        return
    with open(out, "w") as f:
        f.write(text)
