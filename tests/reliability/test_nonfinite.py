"""Item 5: a non-finite loss is detected at log / checkpoint boundaries (no per-step sync with
policy "stop"), nothing non-finite is ever saved, the message names the last good checkpoint
(kept by retention) and --resume restarts from it; policy "skip" drops bad steps within a budget."""

import glob
import os
import re
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from bridle.checkpoint import load_checkpoint_file
from bridle.engine import DefaultTrainer
from rel_helpers import make_cfg


class _Model(nn.Module):
    def __init__(self, nan_calls=()):
        super().__init__()
        self.fc = nn.Linear(64, 4)
        self.nan_calls = set(nan_calls)
        self.calls = 0

    def forward(self, batch):
        self.calls += 1
        loss = nn.functional.cross_entropy(self.fc(batch["input"]), batch["label"])
        if self.calls in self.nan_calls or ("after" in self.nan_calls and self.calls > self.after):
            loss = loss * float("nan")
        return {"loss_cls": loss}


class _Trainer(DefaultTrainer):
    nan_calls = ()
    after = None

    @classmethod
    def build_model(cls, cfg):
        m = _Model(cls.nan_calls)
        m.after = cls.after
        return m


def _cfg(out, **extra):
    return make_cfg(
        out,
        **{"SOLVER.MAX_ITER": 10, "SOLVER.CHECKPOINT_PERIOD": 2, "SOLVER.MAX_TO_KEEP": 1, "LOG_PERIOD": 100, **extra},
    )


def _all_finite(path):
    ck = load_checkpoint_file(path)
    tensors = list(ck["model"].values())
    for st in ck["optimizer"]["state"].values():
        tensors += [v for v in st.values() if isinstance(v, torch.Tensor)]
    return all(torch.isfinite(t).all() for t in tensors)


def test_stop_names_last_good_checkpoint_and_resume_restarts_from_it(toy_plugin, tmp_path, monkeypatch):
    out = str(tmp_path / "nan")
    monkeypatch.setattr(_Trainer, "nan_calls", ("after",))
    monkeypatch.setattr(_Trainer, "after", 5)  # steps 0-4 (iterations 1-5) finite, then non-finite
    t = _Trainer(_cfg(out))
    t.resume_or_load(resume=False)
    with pytest.raises(FloatingPointError) as e:
        t.train()
    msg = str(e.value)
    good = os.path.join(out, "model_0000004.pth")
    assert f"The last good checkpoint is {good}; --resume restarts from it" in msg
    assert "at or before iteration 6" in msg  # caught at the checkpoint boundary of iteration 6
    files = sorted(glob.glob(os.path.join(out, "*.pth")))
    assert files == [good]  # retention kept it; nothing non-finite written
    assert all(_all_finite(f) for f in files)
    monkeypatch.setattr(_Trainer, "nan_calls", ())
    r = _Trainer(_cfg(out))
    r.resume_or_load(resume=True)
    assert r.start_iter == 4
    r.train()
    assert _all_finite(os.path.join(out, "model_final.pth"))


def test_detection_waits_for_a_boundary(toy_plugin, tmp_path, monkeypatch):
    """No per-step host sync: a NaN at iteration 6 surfaces at the checkpoint of iteration 8."""
    monkeypatch.setattr(_Trainer, "nan_calls", (5,))
    t = _Trainer(_cfg(str(tmp_path / "b"), **{"SOLVER.CHECKPOINT_PERIOD": 4, "SOLVER.MAX_TO_KEEP": 0}))
    t.resume_or_load(resume=False)
    with pytest.raises(FloatingPointError, match=r"non-finite.* at or before iteration 8") as e:
        t.train()
    assert "model_0000004.pth" in str(e.value)


def test_log_boundary_names_the_loss(toy_plugin, tmp_path, monkeypatch):
    monkeypatch.setattr(_Trainer, "nan_calls", (2,))
    t = _Trainer(_cfg(str(tmp_path / "c"), **{"LOG_PERIOD": 2, "SOLVER.CHECKPOINT_PERIOD": 0}))
    t.resume_or_load(resume=False)
    with pytest.raises(FloatingPointError, match=r"'loss_cls' = nan.*No checkpoint was written yet"):
        t.train()


def test_skip_policy_within_and_beyond_budget(toy_plugin, tmp_path, monkeypatch):
    monkeypatch.setattr(_Trainer, "nan_calls", (3, 6))
    t = _Trainer(
        _cfg(str(tmp_path / "s"), **{"SOLVER.NONFINITE": "skip", "SOLVER.NONFINITE_BUDGET": 2, "LOG_PERIOD": 1})
    )
    t.resume_or_load(resume=False)
    t.train()
    assert t.nonfinite_skipped == 2
    assert _all_finite(os.path.join(t.cfg.OUTPUT_DIR, "model_final.pth"))
    monkeypatch.setattr(_Trainer, "nan_calls", ("after",))
    monkeypatch.setattr(_Trainer, "after", 2)
    t = _Trainer(_cfg(str(tmp_path / "s2"), **{"SOLVER.NONFINITE": "skip", "SOLVER.NONFINITE_BUDGET": 2}))
    t.resume_or_load(resume=False)
    with pytest.raises(
        FloatingPointError, match=re.escape("3 non-finite steps skipped, more than SOLVER.NONFINITE_BUDGET 2")
    ):
        t.train()


def _skip_worker(rank, init_file, out):
    """One of two gloo ranks training the toy model under DDP; only rank 1's loss is NaN (its
    third forward), so rank 0's own loss is finite while the averaged gradients are not."""
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=2, timeout=timedelta(seconds=60)
    )
    try:
        torch.set_num_threads(1)
        from bridle.plugins import load_plugins

        load_plugins(force=True)
        _Trainer.nan_calls = (3,) if rank == 1 else ()
        cfg = _cfg(out, **{"SOLVER.NONFINITE": "skip", "SOLVER.NONFINITE_BUDGET": 2, "SOLVER.CHECKPOINT_PERIOD": 0})
        t = _Trainer(cfg)
        t.resume_or_load(resume=False)
        t.train()
        model = t.model.module if hasattr(t.model, "module") else t.model
        torch.save({"skipped": t.nonfinite_skipped, "model": model.state_dict()}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_skip_policy_skips_on_every_rank_together(toy_plugin, tmp_path):
    """SOLVER.NONFINITE skip with two ranks: a non-finite loss on one rank drops the step on
    both (without the shared decision rank 0 stepped on NaN gradients); the replicas end equal
    and finite."""
    out = str(tmp_path / "ddp")
    mp.spawn(_skip_worker, args=(str(tmp_path / "init"), out), nprocs=2, join=True)
    r0, r1 = (torch.load(os.path.join(out, f"rank{r}.pt")) for r in (0, 1))
    assert r0["skipped"] == r1["skipped"] == 1
    for k, v in r0["model"].items():
        assert torch.isfinite(v).all(), k
        torch.testing.assert_close(v, r1["model"][k], rtol=0, atol=0)
    assert _all_finite(os.path.join(out, "model_final.pth"))


class _CountingModel(_Model):
    """Counts its training forwards in a buffer, as an EMA codebook or BatchNorm moves its own."""

    def __init__(self, nan_calls=()):
        super().__init__(nan_calls)
        self.register_buffer("forwards", torch.zeros((), dtype=torch.long))

    def forward(self, batch):
        self.forwards += 1
        return super().forward(batch)


class _CountingTrainer(_Trainer):
    @classmethod
    def build_model(cls, cfg):
        return _CountingModel(cls.nan_calls)


@pytest.mark.parametrize("accum", [1, 2])
def test_a_skipped_step_leaves_no_trace_in_buffers(toy_plugin, tmp_path, monkeypatch, accum):
    """SOLVER.NONFINITE skip drops the whole step: the buffers its forwards moved come back too."""
    monkeypatch.setattr(_CountingTrainer, "nan_calls", (3 * accum, 6 * accum))  # steps 3 and 6
    cfg = _cfg(
        str(tmp_path / "k"),
        **{"SOLVER.NONFINITE": "skip", "SOLVER.NONFINITE_BUDGET": 2, "SOLVER.ACCUM_STEPS": accum},
    )
    t = _CountingTrainer(cfg)
    t.resume_or_load(resume=False)
    t.train()
    assert t.nonfinite_skipped == 2
    assert int(t.model.forwards) == 8 * accum  # 10 steps, 2 dropped
