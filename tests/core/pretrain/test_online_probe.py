"""TEST.ONLINE_PROBE (bridle/evaluation/online_probe.py): probe numbers every period, sane values
on a separable toy set, no effect on training (bit-equal with and without), the closed-form probes
against scikit-learn / brute force, and two gloo ranks giving one process's numbers."""

import json
import os

import pytest
import torch

from toy_plugin import toy_opts

PROBE = {
    "TEST.ONLINE_PROBE.ENABLED": True,
    "TEST.ONLINE_PROBE.PERIOD": 2,
    "TEST.ONLINE_PROBE.K": 5,
    "TEST.ONLINE_PROBE.OPTS": "['DATASETS.TOY.NUM_ITEMS', '48']",
    "TEST.ONLINE_PROBE.TRAIN": "toy_signals",
    "TEST.ONLINE_PROBE.VAL": "toy_signals",
    "TEST.ONLINE_PROBE.LABEL_FREE_ITEMS": 16,
    "TEST.BATCH_SIZE_PER_GPU": 16,
}
ENCODER_COLD = {"TRAINER.NAME": "encoder", "MODEL.TOKENIZER.COLD_START": True, "SOLVER.MAX_ITER": 6}


def _cfg(out, **extra):
    from bridle.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_list(toy_opts(out, **extra))
    return cfg


def _train(out, **extra):
    from bridle.trainers.pretrain import EncoderPhaseTrainer

    t = EncoderPhaseTrainer(_cfg(out, **extra))
    t.resume_or_load(resume=False)
    t.train()
    return t


def _rows(out):
    """metrics.json merged per iteration (the phase end's probe is flushed in a row of its own)."""
    rows = {}
    with open(os.path.join(out, "metrics.json")) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows.setdefault(r["iteration"], {}).update(r)
    return rows


def test_probe_logged_every_period_and_training_unchanged(toy_plugin, tmp_path):
    from bridle.checkpoint import load_checkpoint_file
    from bridle.evaluation.online_probe import OnlineProbe

    with_probe = _train(str(tmp_path / "on"), **ENCODER_COLD, **PROBE)
    without = _train(str(tmp_path / "off"), **ENCODER_COLD)
    hook = next(h for h in with_probe._hooks if isinstance(h, OnlineProbe))
    assert not any(isinstance(h, OnlineProbe) for h in without._hooks)
    # periods at 2 and 4, and the phase end (6)
    assert [it for it, _ in hook.history] == [2, 4, 6]
    rows = _rows(str(tmp_path / "on"))
    keys = ["knn_top1", "linear_top1", "linear_lambda", "effective_rank", "masked_acc", "perplexity/l0"]
    keys += ["perplexity/l1", "seconds"]
    for it in (2, 4, 6):
        for k in keys:
            assert f"probe/{k}" in rows[it], (it, k, sorted(rows[it]))
    # 4 well separated frequencies: far above chance (0.25) already with a near-random encoder
    for _, res in hook.history:
        assert res["knn_top1"] >= 0.6 and res["linear_top1"] >= 0.6, res
        assert 1.0 <= res["effective_rank"] <= 32.0
        assert 0.0 <= res["masked_acc"] <= 1.0
        assert 1.0 <= res["perplexity/l0"] <= 16.0
    # bit-equal training: every tensor of the final checkpoint, and every logged loss
    a = load_checkpoint_file(str(tmp_path / "on" / "model_final.pth"))
    b = load_checkpoint_file(str(tmp_path / "off" / "model_final.pth"))
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["optimizer"]["state"]:
        for name, v in a["optimizer"]["state"][k].items():
            assert torch.equal(v, b["optimizer"]["state"][k][name]), (k, name)
    # the RNG states written after the phase-end probe are those of the run without it
    for x, y in zip(a["trainer"]["rng_states"], b["trainer"]["rng_states"]):
        assert torch.equal(x["torch"], y["torch"]) and x["python"] == y["python"]
        assert torch.equal(x["numpy"][1], y["numpy"][1]) and x["numpy"][2] == y["numpy"][2]
    off = _rows(str(tmp_path / "off"))
    for it, r in off.items():
        for k, v in r.items():
            if not k.startswith(("time", "data_time")):
                assert rows[it][k] == v, (it, k)
    # the numbers depend on the weights only: recomputing at the end gives the phase end's again
    # (the step seeder reseeds every step, so also check directly that a probe leaves every RNG as it was)
    import random

    import numpy as np

    from bridle.utils.seed import rng_state

    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(7)
    before = rng_state()
    again = hook.compute()
    after = rng_state()
    assert torch.equal(before["torch"], after["torch"]) and before["python"] == after["python"]
    assert torch.equal(before["numpy"][1], after["numpy"][1]) and before["numpy"][2:] == after["numpy"][2:]
    assert with_probe.model_without_ddp.training and with_probe.model_without_ddp.encoder.training
    hook.probe, hook.pool, hook.layer = "logistic", "cls", 1  # the other probe, pooling and layer
    other = hook.compute()
    assert other["linear_top1"] >= 0.6 and "linear_lambda" not in other and other["knn_top1"] != again["knn_top1"]
    for k, v in hook.history[-1][1].items():
        if k != "seconds":
            assert again[k] == v, k


def test_tokenizer_phase_and_disabled_register_nothing(toy_plugin, tmp_path):
    from bridle.evaluation.online_probe import build_online_probe

    cfg = _cfg(str(tmp_path), **PROBE)
    assert build_online_probe(cfg, "tokenizer") is None
    cfg.defrost()
    cfg.TEST.ONLINE_PROBE.ENABLED = False
    assert build_online_probe(cfg, "encoder") is None


@pytest.mark.parametrize(
    "key,value,words",
    [("PROBE", "svm", "ridge"), ("K", 0, "neighbours"), ("POOL", "max", "mean"), ("PERIOD", -1, ">= 0")],
)
def test_bad_values_are_one_line_user_errors(toy_plugin, tmp_path, key, value, words):
    from bridle.errors import UserError
    from bridle.evaluation.online_probe import check_config

    cfg = _cfg(str(tmp_path), **{**PROBE, f"TEST.ONLINE_PROBE.{key}": value})
    with pytest.raises(UserError) as e:
        check_config(cfg)
    assert f"TEST.ONLINE_PROBE.{key}" in str(e.value) and words in str(e.value) and "\n" not in str(e.value)


def test_probe_numbers_against_references():
    """kNN against brute force, ridge's leave-one-out lambda against refits, effective rank."""
    from bridle.evaluation import online_probe as op

    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 10, generator=g) * 2
    y = torch.arange(90) % 3
    x = centers[y] + torch.randn(90, 10, generator=g)
    xtr, ytr, xva, yva = x[:60], y[:60], x[60:], y[60:]
    acc = op.knn_top1(xtr, ytr, xva, yva, k=1, num_classes=3)
    nn1 = torch.nn.functional.normalize(xva, dim=1) @ torch.nn.functional.normalize(xtr, dim=1).T
    assert acc == float((ytr[nn1.argmax(1)] == yva).float().mean())
    top1, rel = op.ridge_probe(xtr, ytr, xva, yva, 3)
    assert top1 > 0.8 and rel in op.RIDGE_GRID
    # leave-one-out by refitting for the chosen lambda equals the closed form's choice quality
    xs, _ = op._standardise(xtr.double(), xva.double())
    lam = rel * float((torch.linalg.svdvals(xs) ** 2).mean())
    hits = 0
    for i in range(60):
        keep = torch.arange(60) != i
        a, yk = xs[keep], torch.nn.functional.one_hot(ytr[keep], 3).double()
        am, ym = a.mean(0), yk.mean(0)
        w = torch.linalg.solve((a - am).T @ (a - am) + lam * torch.eye(10, dtype=torch.float64), (a - am).T @ (yk - ym))
        hits += int(((xs[i] - am) @ w + ym).argmax() == ytr[i])
    s2 = torch.linalg.svdvals(xs) ** 2
    u = torch.linalg.svd(xs, full_matrices=False)[0]
    shrink = s2 / (s2 + lam)
    fit = op.torch.nn.functional.one_hot(ytr, 3).double().mean(0) + u @ (
        shrink[:, None] * (u.T @ (op.F.one_hot(ytr, 3).double() - op.F.one_hot(ytr, 3).double().mean(0)))
    )
    h = 1.0 / 60 + (u * u) @ shrink
    yy = op.F.one_hot(ytr, 3).double()
    loo = (fit - h[:, None] * yy) / (1 - h[:, None])
    assert hits == int((loo.argmax(1) == ytr).sum())
    assert op.logistic_probe(xtr, ytr, xva, yva, 3) > 0.8
    assert abs(op.effective_rank(torch.eye(7)) - 7.0) < 1e-6
    assert abs(op.effective_rank(torch.ones(5, 4)) - 1.0) < 1e-6
    assert op.perplexities(torch.tensor([[0], [1], [2], [3]]), 8) == pytest.approx([4.0])


@pytest.mark.slow
def test_two_gloo_ranks_log_one_process_numbers(toy_plugin, tmp_path):
    """Two ranks (gloo, tools/train_net.py --num-gpus 2): both ranks compute the same probe numbers,
    and the phase end's numbers in metrics.json equal those one process computes from model_final.pth."""
    import subprocess
    import sys

    from bridle.checkpoint import load_checkpoint_file
    from bridle.evaluation.online_probe import OnlineProbe
    from bridle.trainers.pretrain import EncoderPhaseTrainer

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    out = str(tmp_path / "ddp")
    extra = {**ENCODER_COLD, **PROBE, "SOLVER.MAX_ITER": 4}
    r = subprocess.run(
        [sys.executable, os.path.join(repo, "tools", "train_net.py"), "--num-gpus", "2"] + toy_opts(out, **extra),
        env=dict(toy_plugin, BRIDLE_DIST_BACKEND="gloo"),
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    lines = []
    for name in ("log.txt", "log.txt.rank1"):
        with open(os.path.join(out, name)) as f:
            lines.append([ln.split("Online probe ")[1].split(" (")[0] for ln in f if "Online probe at" in ln])
    assert len(lines[0]) == 2 and lines[0] == lines[1], lines  # iterations 2 and 4, equal on both ranks
    logged = {k[len("probe/") :]: v for k, v in _rows(out)[4].items() if k.startswith("probe/")}

    one = EncoderPhaseTrainer(_cfg(str(tmp_path / "one"), **extra))
    one.model_without_ddp.load_state_dict(load_checkpoint_file(os.path.join(out, "model_final.pth"))["model"])
    hook = next(h for h in one._hooks if isinstance(h, OnlineProbe))
    again = hook.compute()
    for k, v in logged.items():
        if k != "seconds":
            assert again[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k


def test_training_on_shards_probes_a_regular_dataset(toy_plugin, tmp_path):
    """Training reads a stream of shards; the probe set is a regular dataset (and a stream as the
    probe set is a one-line user error)."""
    from bridle.data.shards import ShardSink, encode_tensor_item
    from bridle.errors import UserError
    from bridle.evaluation.online_probe import OnlineProbe
    from bridle.registry import DATASET

    cfg = _cfg(str(tmp_path / "x"))
    toy = DATASET.get("toy_signals")(cfg, "train", "pretrain")
    sink = ShardSink(str(tmp_path / "s"), decoder="tensors", meta={"num_classes": 4}, max_count=20)
    for i in range(len(toy)):
        item = toy[i]
        sink.write(encode_tensor_item({"input": item["input"], "label": item["label"], "index": torch.tensor(i)}))
    sink.close()
    shards = {"DATASETS.TRAIN": "shards", "DATASETS.SHARDS.TRAIN_INDEX": str(tmp_path / "s")}
    t = _train(str(tmp_path / "run"), **ENCODER_COLD, **PROBE, **shards)
    hook = next(h for h in t._hooks if isinstance(h, OnlineProbe))
    assert [it for it, _ in hook.history] == [2, 4, 6] and hook.last_results["linear_top1"] >= 0.6
    with pytest.raises(UserError, match="TEST.ONLINE_PROBE.TRAIN 'shards' is a stream"):
        _train(str(tmp_path / "bad"), **ENCODER_COLD, **{**PROBE, "TEST.ONLINE_PROBE.TRAIN": ""}, **shards)
