"""Helpers of the reliability suite: tiny toy-plugin configs, crafted pickles, subprocess runs."""

import os
import subprocess
import sys

import torch

from toy_plugin import toy_opts

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")


class Evil:
    """Unpickling this runs code: it writes ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def write_evil_checkpoint(path: str, marker: str) -> str:
    """A checkpoint-looking file ({"model": ..., "cfg": ...}) whose unpickling runs code."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"model": {"encoder.cls_token": torch.zeros(1, 1, 32)}, "cfg": "", "meta": Evil(marker)}, path)
    return path


def make_cfg(out_dir: str, **extra):
    from bridle.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_list(toy_opts(out_dir, **extra))
    return cfg


def run_train_net(args, env, timeout=240, check=True):
    r = subprocess.run(
        [sys.executable, TRAIN_NET] + list(args), env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert r.returncode == 0, f"train_net failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r
