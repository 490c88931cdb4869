"""No two modules of the core import each other (at any import site, function-level imports
included): each shared piece has one home that both sides import (e.g. bridle.data.items for
what the loaders and the shard reader share)."""

import ast
import os
from typing import Dict, Set

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _modules(package_dir: str, package: str) -> Dict[str, str]:
    """Dotted module name -> file, for every .py file under ``package_dir``."""
    out = {}
    for dirpath, _, files in os.walk(package_dir):
        for fn in files:
            if fn.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, fn), os.path.dirname(package_dir))
                name = rel[:-3].replace(os.sep, ".")
                out[name[: -len(".__init__")] if name.endswith(".__init__") else name] = os.path.join(dirpath, fn)
    return out


def imports_of(name: str, path: str, known: Set[str]) -> Set[str]:
    """The modules of ``known`` that module ``name`` imports anywhere in its file."""
    is_pkg = path.endswith("__init__.py")
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base[: len(base) - (node.level - 1)] if node.level > 1 else list(base)
                mod = ".".join(parts + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import submodule`
    # a module's own parent packages are imported before it anyway: not an edge of the design
    parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return {m for m in found if m in known and m != name and m not in parents}


def import_cycles(package_dir: str, package: str):
    """Pairs (a, b), a < b, where module a imports b and b imports a."""
    mods = _modules(package_dir, package)
    graph = {n: imports_of(n, p, set(mods)) for n, p in mods.items()}
    return sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps if a in graph.get(b, ())})


def test_no_module_pair_of_the_core_imports_each_other():
    cycles = import_cycles(os.path.join(ROOT, "bridle"), "bridle")
    assert not cycles, f"modules that import each other: {cycles}"
