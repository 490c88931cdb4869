"""A package outside this repo (written to a temp dir, with its own entry point) adds a new
modality and pretrains through tools/train_net.py: the whole schedule, killed in phase 2,
resumed with --resume. Also a 2-process gloo (DDP) run."""

import json
import os
import signal
import subprocess
import sys
import time

import torch

from toy_plugin import toy_opts

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = [sys.executable, os.path.join(REPO, "tools", "train_net.py")]


def run(args, env, timeout=240):
    r = subprocess.run(TRAIN + args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"train_net failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def iterations(path):
    return [json.loads(l)["iteration"] for l in open(path)]


def test_schedule_in_one_command_killed_in_phase_two_and_resumed(toy_plugin, tmp_path):
    out = str(tmp_path / "run")
    opts = toy_opts(
        out,
        **{
            "PRETRAIN.SCHEDULE": "['encoder_cold','tokenizer','encoder']",
            "PRETRAIN.PHASES.TOKENIZER.MAX_ITER": 30,
            "PRETRAIN.PHASES.TOKENIZER.OPTS": "['DATASETS.TOY.SLEEP','0.01']",
            "SOLVER.CHECKPOINT_PERIOD": 5,
        },
    )
    proc = subprocess.Popen(
        TRAIN + opts,
        env=toy_plugin,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    ckpt = os.path.join(out, "1_tokenizer", "model_0000010.pth")
    deadline = time.time() + 180
    while not os.path.exists(ckpt) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert os.path.exists(ckpt), proc.communicate()[0][-3000:] if proc.poll() is not None else "timeout"
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)  # killed in the middle of phase 2
    proc.wait()
    assert not os.path.exists(os.path.join(out, "1_tokenizer", "model_final.pth"))
    assert not os.path.exists(os.path.join(out, "2_encoder"))

    log = run(["--resume"] + opts, toy_plugin)
    assert "Phase 1/3 (encoder_cold) already finished" in log
    with open(os.path.join(out, "1_tokenizer", "last_checkpoint")) as f:
        last = f.read().strip()
    resumed_at = int(last.split("_")[1].split(".")[0]) if last != "model_final.pth" else None
    assert "Resumed from" in log and "at iteration" in log
    assert resumed_at is None or resumed_at >= 10
    for phase in ("0_encoder_cold", "1_tokenizer", "2_encoder"):
        assert os.path.exists(os.path.join(out, phase, "model_final.pth")), phase
    its = iterations(os.path.join(out, "1_tokenizer", "metrics.json"))
    assert its[-1] == 30 and max(its) == 30
    # Phase hand-over: the iteration-2 encoder starts from the iteration-1 encoder and uses
    # the trained tokenizer, bitwise.
    tok = torch.load(os.path.join(out, "1_tokenizer", "model_final.pth"), weights_only=True)["model"]
    enc = torch.load(os.path.join(out, "2_encoder", "model_final.pth"), weights_only=True)["model"]
    for k in tok:
        if k.startswith("tokenizer.") and not k.startswith("tokenizer.quantizer.window."):
            assert torch.equal(tok[k], enc[k]), k  # (the usage window is the tokenizer phase's bookkeeping)


def test_two_process_gloo_training(toy_plugin, tmp_path):
    out = str(tmp_path / "ddp")
    opts = toy_opts(out, **{"TRAINER.NAME": "encoder", "MODEL.TOKENIZER.COLD_START": True, "SOLVER.MAX_ITER": 4})
    log = run(["--num-gpus", "2"] + opts, toy_plugin)
    assert "Rank 0 of 2" in log
    assert os.path.exists(os.path.join(out, "log.txt.rank1"))
    ckpt = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert ckpt["iteration"] == 4
    assert iterations(os.path.join(out, "metrics.json"))[-1] == 4


def test_tokenize_tool_writes_codes_of_every_readable_item(toy_plugin, tmp_path):
    out = str(tmp_path / "tok")
    opts = toy_opts(out, **{"PRETRAIN.SCHEDULE": "['encoder_cold','tokenizer']", "SOLVER.MAX_ITER": 3})
    run(opts, toy_plugin)
    weights = os.path.join(out, "1_tokenizer", "model_final.pth")
    codes_path = str(tmp_path / "codes.npz")
    r = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "tokenize_dataset.py"),
            "--weights",
            weights,
            "--split",
            "train",
            "--output",
            codes_path,
            "DATASETS.TOY.CORRUPT_EVERY",
            "8",
        ],
        env=toy_plugin,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "8 unreadable items skipped" in r.stderr + r.stdout
    import numpy as np

    data = np.load(codes_path)
    assert data["codes"].shape == (56, 8, 2) and list(data["grid_size"]) == [8]
    assert 7 not in set(data["index"].tolist()) and data["codes"].max() < 16
