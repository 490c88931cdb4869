"""The engine on a tiny model: step, AMP, accumulation, optimizer groups, schedule, NaN
guard, checkpoint/resume state, metrics files."""

import json
import math
import os

import pytest
import torch
import torch.nn as nn

from bridle.config import get_cfg
from bridle.engine import DefaultTrainer, HookBase, SimpleTrainer
from bridle.engine.events import EventStorage
from bridle.solver import WarmupCosineSchedule, param_groups
from toy_plugin import toy_opts


class TinyClassifier(nn.Module):
    def __init__(self, length=64, classes=4, nan_after=None):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, length))
        self.fc = nn.Linear(length, 16)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, classes)
        self.nan_after = nan_after
        self.calls = 0

    def forward(self, batch):
        self.calls += 1
        logits = self.head(self.norm(self.fc(batch["input"] + self.pos_embed)))
        loss = nn.functional.cross_entropy(logits.float(), batch["label"])
        if self.nan_after is not None and self.calls > self.nan_after:
            loss = loss * float("nan")
        return {"loss_cls": loss, "acc": (logits.argmax(-1) == batch["label"]).float().mean()}


class _KillAt(HookBase):
    def __init__(self, it):
        self.it = it

    def after_step(self):
        if self.trainer.iter == self.it:
            raise RuntimeError("killed")


class TinyTrainer(DefaultTrainer):
    nan_after = None

    @classmethod
    def build_model(cls, cfg):
        return TinyClassifier(nan_after=cls.nan_after)


@pytest.fixture
def cfg(toy_plugin, tmp_path):
    c = get_cfg()
    c.merge_from_list(toy_opts(str(tmp_path / "out"), **{"SOLVER.MAX_ITER": 8, "SOLVER.CHECKPOINT_PERIOD": 4}))
    return c


def test_train_writes_metrics_checkpoints_and_tensorboard(cfg):
    t = TinyTrainer(cfg)
    t.resume_or_load(resume=False)
    t.train()
    out = cfg.OUTPUT_DIR
    lines = [json.loads(l) for l in open(os.path.join(out, "metrics.json"))]
    assert [l["iteration"] for l in lines] == [2, 4, 6, 8]  # iterations done
    assert all(math.isfinite(l["loss_cls"]) and "lr" in l and "time" in l for l in lines)
    assert os.path.exists(os.path.join(out, "model_0000004.pth"))  # after 4 iterations
    assert os.path.exists(os.path.join(out, "model_final.pth"))
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(out, "tb")))


def test_resume_continues_from_checkpoint_iteration_with_same_state(cfg, tmp_path):
    torch.manual_seed(0)
    full = TinyTrainer(cfg)
    full.resume_or_load(resume=False)
    full.train()
    ref = {k: v.clone() for k, v in full.model.state_dict().items()}

    c2 = cfg.clone()
    c2.OUTPUT_DIR = str(tmp_path / "interrupted")
    torch.manual_seed(0)
    part = TinyTrainer(c2)
    part.register_hooks([_KillAt(5)])  # dies two steps after the checkpoint of iteration 3
    part.resume_or_load(resume=False)
    with pytest.raises(RuntimeError, match="killed"):
        part.train()
    assert not os.path.exists(os.path.join(c2.OUTPUT_DIR, "model_final.pth"))
    resumed = TinyTrainer(c2)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 4
    resumed.train()
    for k, v in resumed.model.state_dict().items():
        torch.testing.assert_close(v, ref[k], rtol=1e-5, atol=1e-6)


def test_nan_loss_stops_training_with_clear_error(cfg):
    TinyTrainer.nan_after = 3
    try:
        t = TinyTrainer(cfg)
        t.resume_or_load(resume=False)
        with pytest.raises(FloatingPointError, match="loss_cls"):
            t.train()
    finally:
        TinyTrainer.nan_after = None
    assert not os.path.exists(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))


def test_no_weight_decay_on_bias_norm_and_tokens():
    m = TinyClassifier()
    groups = param_groups(m, 0.05)
    decay = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
    assert decay == {"fc.weight", "head.weight"}


def test_warmup_cosine_schedule():
    s = WarmupCosineSchedule(1.0, max_iter=110, warmup_iters=10, min_lr=0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.55)
    assert s(110) == pytest.approx(0.1)


def _batches(n, bs=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        {"input": torch.randn(bs, 64, generator=g), "label": torch.randint(0, 4, (bs,), generator=g)} for _ in range(n)
    ]


def test_gradient_accumulation_matches_large_batch():
    torch.manual_seed(0)
    a, b = TinyClassifier(), TinyClassifier()
    b.load_state_dict(a.state_dict())
    small = _batches(2)
    big = [{"input": torch.cat([x["input"] for x in small]), "label": torch.cat([x["label"] for x in small])}]
    results = []
    for model, data, accum in ((a, small, 2), (b, big, 1)):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        t = SimpleTrainer(model, data, opt, accum_steps=accum)
        t.storage = EventStorage()
        t.run_step()
        results.append(model.fc.weight.detach().clone())
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_step_runs_and_learns(precision):
    torch.manual_seed(0)
    model = TinyClassifier()
    data = _batches(1) * 30
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    t = SimpleTrainer(model, data, opt, precision=precision, clip_grad=1.0)
    t.storage = EventStorage()
    for _ in range(30):
        t.run_step()
    hist = t.storage.flush()
    assert hist["loss_cls"] < 1.3 and math.isfinite(hist["grad_norm"])
    if precision == "fp16":
        assert t.grad_scaler is not None and "grad_scaler" in t.state_dict()


def test_bad_precision_is_rejected():
    with pytest.raises(ValueError, match="SOLVER.PRECISION"):
        SimpleTrainer(TinyClassifier(), [], None, precision="fp8")
