"""bridle.demo.probe_study (tools/probe_study.py): the checkpoints of the encoder phases with the
online signals logged at their iterations, and the Spearman table."""

import json
import os

import pytest

from bridle.demo import probe_study


def _phase(root, name, rows, ckpts):
    d = os.path.join(root, name)
    os.makedirs(d)
    with open(os.path.join(d, "metrics.json"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    for c in ckpts + ["model_final.pth"]:
        open(os.path.join(d, c), "w").close()


def test_encoder_checkpoints_and_correlations(tmp_path):
    root = str(tmp_path)

    def probe(it, v):
        return {"iteration": it, "probe/knn_top1": v, "probe/linear_top1": 1 - v, "probe/perplexity/l0": 4.0}

    _phase(
        root, "0_encoder_cold", [{"iteration": 2, "loss_mlm": 3.0}, probe(2, 0.1), probe(4, 0.2)], ["model_0000002.pth"]
    )
    _phase(root, "1_tokenizer", [{"iteration": 3, "loss_cos": 0.1}], [])
    _phase(root, "2_encoder", [probe(2, 0.3), {"iteration": 4, "loss_mlm": 2.0}, probe(4, 0.4)], ["model_0000002.pth"])
    pts = probe_study.encoder_checkpoints(root)
    assert [(p["phase"], p["iteration"], p["global_iteration"]) for p in pts] == [
        ("0_encoder_cold", 2, 2),
        ("0_encoder_cold", 4, 4),
        ("2_encoder", 2, 9),
        ("2_encoder", 4, 11),
    ]
    assert pts[-1]["checkpoint"].endswith(os.path.join("2_encoder", "model_final.pth"))
    assert [p["knn"] for p in pts] == [0.1, 0.2, 0.3, 0.4] and pts[0]["loss_mlm"] == -3.0
    for p, y in zip(pts, (0.5, 0.6, 0.7, 0.9)):
        p["offline_val_top1"] = y
    rho = probe_study.correlations(pts)
    assert rho["knn"] == pytest.approx(1.0) and rho["linear"] == pytest.approx(-1.0)
    assert rho["perplexity"] is None  # constant: no rank correlation
    for p in pts:
        p["seed"] = 0
    within = probe_study.within_phase(pts)
    assert within["knn"] is None  # two checkpoints per phase: too few for a rank correlation
    md = probe_study.table({"per_seed": {0: rho}, "all": rho, "within_phase": within})
    assert "| knn | +1.00 | +1.00 | n/a |" in md and "| perplexity | n/a | n/a | n/a |" in md


def test_demo_driver_passes_the_downstream_data_as_probe_set():
    from bridle.config import load_config
    from bridle.demo.driver import REPO, DemoSpec, pretrain_opts

    cfgs = {f"{k}_config": os.path.join(REPO, "configs", "image", f"demo_{k}.yaml") for k in ("pretrain", "finetune")}
    spec = DemoSpec(
        "x",
        "x",
        linprobe_config="",
        pretrain_opts=["SEED", "3"],
        downstream_opts=["DATASETS.IMAGE.ROOT", "/d/l"],
        **cfgs,
    )
    opts = pretrain_opts(spec)
    cfg = load_config(spec.pretrain_config, opts)
    assert cfg.SEED == 3 and cfg.TEST.ONLINE_PROBE.ENABLED
    assert list(cfg.TEST.ONLINE_PROBE.OPTS) == ["DATASETS.IMAGE.ROOT", "/d/l"]
    off = DemoSpec(
        "x",
        "x",
        linprobe_config="",
        pretrain_opts=["TEST.ONLINE_PROBE.ENABLED", "False"],
        downstream_opts=["A", "b"],
        **cfgs,
    )
    assert pretrain_opts(off) == ["TEST.ONLINE_PROBE.ENABLED", "False"]
