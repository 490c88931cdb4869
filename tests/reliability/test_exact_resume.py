"""Item 3: exact resume. A run SIGKILLed at any point (mid-phase, before a phase's first
checkpoint, inside a checkpoint write) and resumed with --resume ends with the weights and
optimizer state of the uninterrupted run (CPU, fp32: |diff| <= 1e-6; measured 0)."""

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from bridle.checkpoint import load_checkpoint_file
from rel_helpers import REPO, crash_then_resume, make_cfg
from state_compare import max_state_diff
from toy_plugin import toy_opts

# Runs a schedule in-process like tools/train_net.py, SIGKILLing itself at KILL =
# [phase dir, "step" | "write", iteration | checkpoint name].
_RUNNER = r"""
import io, json, os, signal, sys
import torch
from bridle.config import get_cfg
from bridle.engine import HookBase
from bridle.engine.defaults import DefaultTrainer
from bridle.trainers.schedule import ScheduleRunner

opts, resume, kill = json.loads(sys.argv[1]), sys.argv[2] == "1", json.loads(sys.argv[3])
cfg = get_cfg()
cfg.merge_from_list(opts)
cfg.freeze()

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if kill and kill[1] == "step":
    class Kill(HookBase):
        def before_step(self):
            if self.trainer.cfg.OUTPUT_DIR.endswith(kill[0]) and self.trainer.iter == kill[2]:
                die()
    orig = DefaultTrainer.build_hooks
    DefaultTrainer.build_hooks = lambda self: orig(self) + [Kill()]
if kill and kill[1] == "write":
    real_save = torch.save
    def save(obj, f, *a, **k):
        name = getattr(f, "name", "")
        if kill[0] in str(name) and kill[2] in str(name):
            buf = io.BytesIO()
            real_save(obj, buf, *a, **k)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            die()
        return real_save(obj, f, *a, **k)
    torch.save = save

runner = ScheduleRunner(cfg)
runner.resume_or_load(resume=resume)
runner.train()
"""

_EXTRA = {
    "PRETRAIN.SCHEDULE": "['encoder_cold','tokenizer']",
    "SOLVER.MAX_ITER": 6,
    "SOLVER.CHECKPOINT_PERIOD": 2,
    "SOLVER.MAX_TO_KEEP": 1,
    "MODEL.ENCODER.DROP_PATH": 0.1,  # random draws inside the step
}


def _run(env, out, resume, kill=None):
    opts = toy_opts(out, **_EXTRA)
    r = subprocess.run(
        [sys.executable, "-c", _RUNNER, json.dumps(opts), "1" if resume else "0", json.dumps(kill)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return r


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_equals_uninterrupted(toy_plugin, tmp_path):
    ref = str(tmp_path / "ref")
    assert _run(toy_plugin, ref, False).returncode == 0
    out = str(tmp_path / "killed")
    kills = [
        ["0_encoder_cold", "step", 3],  # mid-phase, one step after a checkpoint
        ["0_encoder_cold", "write", "model_final"],  # inside the phase's final write
        ["1_tokenizer", "step", 1],  # before the phase's first checkpoint
        ["1_tokenizer", "write", "model_0000004"],  # inside a periodic write (4 iterations done)
    ]
    for i, kill in enumerate(kills):
        r = _run(toy_plugin, out, resume=i > 0, kill=kill)
        assert r.returncode == -9, f"{kill}: expected SIGKILL, got {r.returncode}\n{r.stderr[-2000:]}"
    r = _run(toy_plugin, out, resume=True)
    assert r.returncode == 0, r.stderr[-3000:]
    for phase in ("0_encoder_cold", "1_tokenizer"):
        a = load_checkpoint_file(os.path.join(ref, phase, "model_final.pth"))
        b = load_checkpoint_file(os.path.join(out, phase, "model_final.pth"))
        dm, do = max_state_diff(a["model"], b["model"]), max_state_diff(a["optimizer"], b["optimizer"])
        print(f"{phase}: max |model diff| {dm:.3g}, max |optimizer diff| {do:.3g}")
        assert dm <= 1e-6 and do <= 1e-6, (phase, dm, do)


def test_in_process_resume_is_exact_whatever_the_global_rng(toy_plugin, tmp_path):
    """Crash at iteration 4, scramble every global RNG, resume: same final state (the
    DataLoader iterator no longer draws its base seed from the restored global RNG)."""

    def scramble():
        torch.manual_seed(12345)
        random.seed(1)
        np.random.seed(2)
        torch.rand(17)

    extra = {
        "TRAINER.NAME": "encoder",
        "MODEL.TOKENIZER.COLD_START": True,
        "SOLVER.MAX_ITER": 7,
        "SOLVER.CHECKPOINT_PERIOD": 3,
        "MODEL.ENCODER.DROP_PATH": 0.1,
    }
    full, res = crash_then_resume(str(tmp_path), extra, crash_at=4, before_resume=scramble)
    assert res.start_iter == 3
    res.train()
    assert max_state_diff(full.model_without_ddp.state_dict(), res.model_without_ddp.state_dict()) == 0.0
    assert max_state_diff(full.optimizer.state_dict()["state"], res.optimizer.state_dict()["state"]) == 0.0


def test_in_process_resume_is_exact_with_several_masks(toy_plugin, tmp_path):
    """PRETRAIN.NUM_MASKS 2 (issue #23): the B x 2 views' masks come from the restored global RNG
    as one batch, so a resumed run ends as the uninterrupted one, whatever the RNG before resume."""
    extra = {
        "TRAINER.NAME": "encoder",
        "MODEL.TOKENIZER.COLD_START": True,
        "PRETRAIN.NUM_MASKS": 2,
        "SOLVER.MAX_ITER": 7,
        "SOLVER.CHECKPOINT_PERIOD": 3,
        "MODEL.ENCODER.DROP_PATH": 0.1,
    }
    full, res = crash_then_resume(str(tmp_path), extra, crash_at=4, before_resume=lambda: torch.manual_seed(999))
    assert res.start_iter == 3
    res.train()
    assert max_state_diff(full.model_without_ddp.state_dict(), res.model_without_ddp.state_dict()) == 0.0
    assert max_state_diff(full.optimizer.state_dict()["state"], res.optimizer.state_dict()["state"]) == 0.0


def test_phase_restarted_from_scratch_has_same_init(toy_plugin, tmp_path):
    from bridle.trainers.pretrain import EncoderPhaseTrainer

    extra = {"TRAINER.NAME": "encoder", "MODEL.TOKENIZER.COLD_START": True}
    a = EncoderPhaseTrainer(make_cfg(str(tmp_path / "a"), **extra)).model_without_ddp.state_dict()
    torch.rand(100)  # whatever ran before in this process
    b = EncoderPhaseTrainer(make_cfg(str(tmp_path / "b"), **extra)).model_without_ddp.state_dict()
    assert max_state_diff(a, b) == 0.0


class _RandomItems(torch.utils.data.Dataset):
    """Items drawn from the global RNGs, as random augmentations are."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return {"input": torch.rand(3) + float(np.random.rand()) + random.random(), "i": i}


def test_loader_items_depend_on_position_not_workers_or_resume(toy_plugin, tmp_path):
    from bridle.data.build import build_train_loader

    def batches(start_iter, workers, n):
        cfg = make_cfg(str(tmp_path / "l"), **{"SOLVER.BATCH_SIZE_PER_GPU": 4, "DATALOADER.NUM_WORKERS": workers})
        it = iter(build_train_loader(cfg, _RandomItems(), start_iter))
        return [next(it)["input"] for _ in range(n)]

    full = batches(0, 0, 5)
    assert all(torch.equal(a, b) for a, b in zip(full[2:], batches(2, 0, 3)))  # resumed at iteration 2
    assert all(torch.equal(a, b) for a, b in zip(full, batches(0, 2, 5)))  # two workers
