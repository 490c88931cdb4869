"""bridle/demo/tta.py (tools/time_to_accuracy.py): variant names -> overrides, the summary's
goal check (paired by seed, on val only), the table and the plot from finished runs."""

import json
import os

import pytest

from bridle.config import load_config
from bridle.demo import tta

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_variant_names_and_overrides():
    assert tta.parse_variant("m4_e0.25_t1") == {"num_masks": 4, "encoder_fraction": 0.25, "tokenizer_fraction": 1.0}
    for bad in ("m0_e1_t1", "m2_e0_t1", "m2_e1", "x"):
        with pytest.raises(ValueError, match="m<M>_e<E>_t<T>"):
            tta.parse_variant(bad)
    cfg = load_config(os.path.join(REPO, "configs", "image", "demo_pretrain.yaml"))
    enc, tok = cfg.PRETRAIN.PHASES.ENCODER.MAX_ITER, cfg.PRETRAIN.PHASES.TOKENIZER.MAX_ITER
    opts = dict(zip(*[iter(tta.variant_opts(cfg, "m2_e0.5_t0.5"))] * 2))
    assert opts["PRETRAIN.NUM_MASKS"] == "2"
    assert opts["PRETRAIN.PHASES.ENCODER.MAX_ITER"] == str(round(enc * 0.5))
    assert opts["PRETRAIN.PHASES.TOKENIZER.MAX_ITER"] == str(round(tok * 0.5))
    assert tta.variant_opts(cfg, "m1_e1_t1") == ["PRETRAIN.NUM_MASKS", "1"]  # the committed recipe as is
    # a recipe given in epochs is scaled in epochs
    audio = load_config(os.path.join(REPO, "configs", "audio", "pretrain_rq.yaml"))
    opts = dict(zip(*[iter(tta.variant_opts(audio, "m4_e0.25_t1"))] * 2))
    assert float(opts["PRETRAIN.PHASES.ENCODER.EPOCHS"]) == audio.PRETRAIN.PHASES.ENCODER.EPOCHS * 0.25


def _row(variant, seed, cpu, val, test):
    return dict(tta.parse_variant(variant), variant=variant, seed=seed, pretrain_cpu_seconds=cpu,
                val_top1=val, test_top1=test, selected_iteration=1)  # fmt: skip


def test_summary_goal_is_paired_by_seed_on_val(tmp_path):
    rows = [
        _row("m1_e1_t1", 0, 100.0, 0.80, 0.70),
        _row("m1_e1_t1", 1, 100.0, 0.90, 0.70),
        _row("m4_e0.25_t1", 0, 40.0, 0.85, 0.10),  # above seed 0's committed val
        _row("m4_e0.25_t1", 1, 40.0, 0.85, 0.10),  # below seed 1's: not reached
        _row("m2_e0.5_t1", 0, 60.0, 0.80, 0.99),  # reaches (ties count), but over 0.5x
        _row("m2_e0.5_t1", 1, 60.0, 0.90, 0.99),
    ]
    s = tta.summarise(rows, {"val_top1": 0.5, "test_top1": 0.5, "C": 1.0})
    by = {v["variant"]: v for v in s["variants"]}
    assert by["m4_e0.25_t1"]["cpu_ratio"] == 0.4 and not by["m4_e0.25_t1"]["reaches_committed_val"]
    assert by["m2_e0.5_t1"]["reaches_committed_val"] and not by["m2_e0.5_t1"]["within_goal"]
    assert s["fastest_reaching_within_goal"] is None  # test accuracy (0.99) never chooses
    rows[3]["val_top1"] = 0.95
    assert tta.summarise(rows, None)["fastest_reaching_within_goal"] == "m4_e0.25_t1"
    # the table and the plot from finished runs on disk
    for r in rows:
        d = tmp_path / r["variant"] / f"seed{r['seed']}"
        d.mkdir(parents=True)
        (d / "row.json").write_text(json.dumps(r))
    out = tta.write_outputs(str(tmp_path), str(tmp_path / "docs"), prefix="t")
    assert out["fastest_reaching_within_goal"] == "m4_e0.25_t1"
    for ext in ("json", "md", "png"):
        assert (tmp_path / "docs" / f"t.{ext}").stat().st_size > 0
    assert "| `m4_e0.25_t1` | 4 | 0.25 | 1 | 40 | 0.4 |" in (tmp_path / "t.md").read_text()
