import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bridle.demo import driver as demo_lib

REPO = demo_lib.REPO


def test_code_usage_counts_every_level_over_the_whole_data():
    codes = np.zeros((3, 4, 2), dtype=np.int16)
    codes[..., 0] = [[0, 1, 2, 3]] * 3  # 4 of 8 codes, uniform
    codes[..., 1] = 5  # one code
    u = demo_lib.code_usage(codes, 8)
    assert [x["used"] for x in u] == [4, 1]
    assert u[0]["usage"] == pytest.approx(0.5) and u[1]["usage"] == pytest.approx(0.125)
    assert u[0]["perplexity"] == pytest.approx(4.0) and u[1]["perplexity"] == pytest.approx(1.0)


def test_selected_reads_the_val_selected_evaluation():
    res = {
        "last": {"iteration": 40, "val": {"top1": 0.5}, "test": {"top1": 0.7}},
        "val_selected": {"iteration": 20, "val": {"top1": 0.6}, "test": {"top1": 0.4}},
    }
    assert demo_lib.selected(res) == {
        "test_top1": 0.4,
        "val_top1": 0.6,
        "selected_iteration": 20,
        "last_test_top1": 0.7,
    }


def test_schedule_checkpoints_first_and_last_encoder_last_tokenizer(tmp_path):
    for d in ["0_encoder_cold", "1_tokenizer", "2_encoder", "3_tokenizer", "4_encoder", "5_encoder"]:
        (tmp_path / d).mkdir()
        if d != "5_encoder":  # unfinished phase: no model_final.pth
            (tmp_path / d / "model_final.pth").write_bytes(b"")
    c = demo_lib.schedule_checkpoints(str(tmp_path))
    assert c["bridle_iter1"].endswith(os.path.join("0_encoder_cold", "model_final.pth"))
    assert c["bridle"].endswith(os.path.join("4_encoder", "model_final.pth"))
    assert c["tokenizer"].endswith(os.path.join("3_tokenizer", "model_final.pth"))
    with pytest.raises(FileNotFoundError, match="No finished phase"):
        demo_lib.schedule_checkpoints(str(tmp_path / "5_encoder"))


def test_phase_quantizer_reads_each_encoder_phase_config(tmp_path):
    """Per-phase OPTS may give the tokenizer phases another quantizer: the report names the one
    each evaluated encoder predicted, from that phase's saved config."""
    from bridle.config import get_cfg

    for d, levels, size in (("0_encoder_cold", 2, 64), ("2_encoder", 4, 128)):
        cfg = get_cfg()
        cfg.merge_from_list(["MODEL.QUANTIZER.NUM_LEVELS", levels, "MODEL.QUANTIZER.CODEBOOK_SIZE", size])
        (tmp_path / d).mkdir()
        (tmp_path / d / "config.yaml").write_text(cfg.dump())
    q0 = demo_lib.phase_quantizer(str(tmp_path / "0_encoder_cold" / "model_final.pth"))
    q2 = demo_lib.phase_quantizer(str(tmp_path / "2_encoder" / "model_final.pth"))
    assert q0 == {"name": get_cfg().MODEL.QUANTIZER.NAME, "num_levels": 2, "codebook_size": 64}
    assert (q2["num_levels"], q2["codebook_size"]) == (4, 128)


@pytest.mark.slow
def test_image_demo_end_to_end_writes_report_and_plots(tmp_path):
    """`make demo-image` with a few iterations per run: the report has every documented key."""
    pytest.importorskip("sklearn")
    out = str(tmp_path / "demo")
    tiny = ["MODEL.ENCODER.EMBED_DIM", "64", "MODEL.ENCODER.DEPTH", "2", "MODEL.ENCODER.NUM_HEADS", "2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "demo_image.py"),
            "--output-dir",
            out,
            "--labelled-per-class",
            "2",
            "--pretrain-opts",
            *tiny,
            "PRETRAIN.PHASES.ENCODER_COLD.MAX_ITER",
            "4",
            "PRETRAIN.PHASES.TOKENIZER.MAX_ITER",
            "4",
            "PRETRAIN.PHASES.ENCODER.MAX_ITER",
            "4",
            "SOLVER.WARMUP_ITERS",
            "1",  # the configs' 20 would not fit in 4 iterations (refused)
            "DATALOADER.NUM_WORKERS",
            "0",
            "PROGRESS_BAR",
            "False",
            "--downstream-opts",
            *tiny,
            "SOLVER.MAX_ITER",
            "4",
            "SOLVER.WARMUP_ITERS",
            "1",
            "TEST.EVAL_PERIOD",
            "2",
            "DATALOADER.NUM_WORKERS",
            "0",
            "PROGRESS_BAR",
            "False",
        ],
        check=True,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    assert report["demo"] == "image" and report["schedule"] == ["encoder_cold", "tokenizer", "encoder"]
    assert report["encoders"] == {
        "bridle_iter1": "pretrain/0_encoder_cold/model_final.pth",
        "bridle": "pretrain/2_encoder/model_final.pth",
    }
    for proto in ("linear_probe", "finetune"):
        assert sorted(report["results"][proto]) == ["bridle", "bridle_iter1", "random_init"]
        for r in report["results"][proto].values():
            assert 0.0 <= r["test_top1"] <= 1.0 and 0.0 <= r["val_top1"] <= 1.0
            assert r["selected_iteration"] in (2, 4)
    assert 0.5 < report["baseline"]["test_top1"] <= 1.0  # raw pixels separate digits well
    assert report["notes"]["labelled_items"] == 20
    assert set(report["quantizer"]) == {"bridle_iter1", "bridle"}
    assert report["quantizer"]["bridle"]["num_levels"] == len(report["tokenizer_usage"]["per_level"])
    levels = report["tokenizer_usage"]["per_level"]
    assert report["quantizer"]["bridle_iter1"]["num_levels"] == 2  # the cold start: RQ 2 x 64
    assert (report["quantizer"]["bridle"]["num_levels"], report["quantizer"]["bridle"]["codebook_size"]) == (4, 128)
    assert [x["level"] for x in levels] == [0, 1, 2, 3]
    assert report["tokenizer_usage"]["items"] == report["notes"]["pool_items"]
    assert all(x["codebook_size"] == 128 for x in levels)
    assert all(0 < x["usage"] <= 1 and x["used"] <= x["codebook_size"] for x in levels)
    assert sorted(os.listdir(os.path.join(out, "plots"))) == ["downstream.png", "pretrain.png"]
    # One seed, the same numbers: the linear probe of the final encoder run again.
    again = str(tmp_path / "again")
    subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "train_net.py"),
            "--config-file",
            os.path.join(REPO, "configs", "image", "demo_linprobe.yaml"),
            "OUTPUT_DIR",
            again,
            "MODEL.WEIGHTS",
            os.path.join(out, report["encoders"]["bridle"]),
            "DATASETS.IMAGE.ROOT",
            os.path.join(out, "data", "labelled"),
            *tiny,
            "SOLVER.MAX_ITER",
            "4",
            "SOLVER.WARMUP_ITERS",
            "1",
            "TEST.EVAL_PERIOD",
            "2",
            "DATALOADER.NUM_WORKERS",
            "0",
            "PROGRESS_BAR",
            "False",
        ],
        check=True,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with open(os.path.join(again, "final_results.json")) as f:
        rerun = demo_lib.selected(json.load(f))
    first = dict(report["results"]["linear_probe"]["bridle"])
    first.pop("seconds")
    assert rerun == first


def test_demo_study_rejects_misplaced_flags_and_odd_overrides(capsys):
    from bridle_audio.demo import study_main

    for argv, msg in ((["x", "--fresh"], "must come before NAME"), (["x", "SEED"], "expected KEY VALUE pairs")):
        with pytest.raises(SystemExit):
            study_main(argv)
        assert msg in capsys.readouterr().err
