"""Shared by the plugin-API tests: install a package written to a temp dir the way pip's
``pip install -e`` makes it visible (its real setup.py writes the .egg-info with the entry
points; the directory goes on PYTHONPATH), and run the tools in a subprocess."""

import os
import re
import subprocess
import sys
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def install_package(pkg_dir: str, base_env: Dict[str, str] = None) -> Dict[str, str]:
    """Run the package's own setup.py (egg_info: metadata + entry_points.txt) and return an
    environment in which the package and its ``bridle.plugins`` entry point are installed."""
    env = dict(base_env or os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    r = subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info"],
        cwd=pkg_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, f"setup.py of {pkg_dir} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    env["PYTHONPATH"] = os.pathsep.join([pkg_dir, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_tool(tool: str, args: List[str], env: Dict[str, str], timeout: int = 300, cwd: str = REPO) -> str:
    r = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", tool)] + [str(a) for a in args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode == 0, f"{tool} {args} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


_BLOCK = re.compile(
    r"<!-- plugin-example:begin path=(?P<path>\S+) -->\s*```\w*\n(?P<body>.*?)```\s*<!-- plugin-example:end -->",
    re.S,
)


def readme_example_files(readme: str) -> Dict[str, str]:
    """path -> text of every code block between the README's plugin-example markers."""
    return {m.group("path"): m.group("body") for m in _BLOCK.finditer(readme)}
