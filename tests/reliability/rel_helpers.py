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


class Crash(Exception):
    """Raised by :func:`crash_then_resume`'s hook: a process dying mid-run, in-process."""


def crash_then_resume(root: str, extra: dict, crash_at: int, before_resume=None):
    """Train an encoder phase of ``extra`` uninterrupted in ``root/a``; train it again in
    ``root/b`` until it crashes before step index ``crash_at``; call ``before_resume`` (e.g. to
    scramble process state), then rebuild the ``b`` run with ``--resume``. Returns ``(full,
    resumed)``: ``resumed`` has loaded its checkpoint and is not trained yet."""
    import pytest

    from bridle.engine import HookBase
    from bridle.trainers.pretrain import EncoderPhaseTrainer

    class CrashAt(HookBase):
        def before_step(self):
            if self.trainer.iter == crash_at:
                raise Crash()

    full = EncoderPhaseTrainer(make_cfg(os.path.join(root, "a"), **extra))
    full.resume_or_load(resume=False)
    full.train()
    part = EncoderPhaseTrainer(make_cfg(os.path.join(root, "b"), **extra))
    part.register_hooks([CrashAt()])
    part.resume_or_load(resume=False)
    with pytest.raises(Crash):
        part.train()
    if before_resume is not None:
        before_resume()
    resumed = EncoderPhaseTrainer(make_cfg(os.path.join(root, "b"), **extra))
    resumed.resume_or_load(resume=True)
    return full, resumed
