"""tools/new_plugin.py: the scaffolded package installs, trains a BRIDLE schedule through
train_net at once, exports its encoder, fine-tunes from it, and passes its own tests."""

import json
import os
import subprocess
import sys

import pytest

from bridle.checkpoint import load_checkpoint_file
from plugins_api_util import REPO, install_package, run_tool

FILES = (
    "setup.py",
    "bridle_imu/__init__.py",
    "bridle_imu/config.py",
    "bridle_imu/patch_embed.py",
    "bridle_imu/masking.py",
    "bridle_imu/dataset.py",
    "bridle_imu/transforms.py",
    "configs/pretrain_tiny.yaml",
    "configs/finetune_tiny.yaml",
    "tests/test_imu.py",
    "example_data/train.csv",
    "example_data/val.csv",
    "example_data/test.csv",
)


def _new_plugin(*args):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "new_plugin.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_scaffold_writes_the_package_and_refuses_bad_names(tmp_path):
    r = _new_plugin("imu", "--dir", tmp_path)
    assert r.returncode == 0, r.stderr
    root = tmp_path / "bridle-imu"
    for f in FILES:
        assert (root / f).is_file(), f
    assert "imu = bridle_imu" in (root / "setup.py").read_text()
    rows = (root / "example_data" / "train.csv").read_text().splitlines()
    assert rows[0] == "path,label" and len(rows) == 31
    again = _new_plugin("imu", "--dir", tmp_path)
    assert again.returncode != 0 and "already exists" in again.stderr
    bad = _new_plugin("My-IMU", "--dir", tmp_path)
    assert bad.returncode != 0 and "lower-case identifier" in bad.stderr


@pytest.mark.slow
def test_scaffold_trains_exports_finetunes_and_passes_its_tests(tmp_path):
    assert _new_plugin("imu", "--dir", tmp_path).returncode == 0
    root = str(tmp_path / "bridle-imu")
    env = install_package(root)
    listing = run_tool("train_net.py", ["--list"], env)
    for entry in ("imu_conv", "imu_span", "imu_manifest", "imu_noise"):
        assert entry in listing
    assert "[bridle_imu]" in listing
    out = tmp_path / "pre"
    common = ["MODEL.DEVICE", "cpu", "PROGRESS_BAR", False]
    run_tool(
        "train_net.py",
        ["--config-file", f"{root}/configs/pretrain_tiny.yaml", "OUTPUT_DIR", out, "SOLVER.MAX_ITER", 2, *common],
        env,
    )
    for phase in ("0_encoder_cold", "1_tokenizer", "2_encoder"):
        assert load_checkpoint_file(str(out / phase / "model_final.pth"))["iteration"] == 2, phase  # iterations done
    enc = tmp_path / "encoder.pth"
    meta = json.loads(
        run_tool("export_encoder.py", [out / "2_encoder" / "model_final.pth", enc], env).strip().splitlines()[-1]
    )
    assert meta["grid_size"] == [16] and meta["depth"] == 2
    ft = tmp_path / "ft"
    run_tool(
        "train_net.py",
        [
            "--config-file",
            f"{root}/configs/finetune_tiny.yaml",
            "OUTPUT_DIR",
            ft,
            "MODEL.WEIGHTS",
            enc,
            "SOLVER.MAX_ITER",
            4,
            "TEST.EVAL_PERIOD",
            2,
            *common,
        ],
        env,
    )
    results = json.load(open(ft / "final_results.json"))
    assert 0.0 <= results["last"]["test"]["top1"] <= 1.0 and results["val_selected"] is not None
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.join(root, "tests")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
