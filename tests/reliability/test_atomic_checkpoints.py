"""Item 2: checkpoint and pointer writes are atomic; a phase counts as finished only with its
marker; resume falls back to the newest checkpoint that loads, and says so."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from bridle.checkpoint.io import CheckpointError, atomic_save, load_checkpoint_file
from rel_helpers import REPO, make_cfg

_WRITER = r"""
import sys, torch
from bridle.checkpoint.io import atomic_save, atomic_write_text
path, ptr = sys.argv[1], sys.argv[2]
i = 0
print("ready", flush=True)
while True:
    i += 1
    atomic_save({"i": i, "w": torch.full((2_000_000,), float(i))}, path)
    atomic_write_text(ptr, f"model_{i:07d}.pth" * 50)
"""


@pytest.mark.slow
def test_sigkill_during_writes_leaves_complete_files(tmp_path):
    path, ptr = str(tmp_path / "model_final.pth"), str(tmp_path / "last_checkpoint")
    atomic_save({"i": 0, "w": torch.zeros(2_000_000)}, path)
    for delay in (0.4, 0.9):
        p = subprocess.Popen(
            [sys.executable, "-c", _WRITER, path, ptr],
            cwd=REPO,
            stdout=subprocess.PIPE,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )
        assert p.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        ckpt = load_checkpoint_file(path)  # never truncated
        assert torch.all(ckpt["w"] == float(ckpt["i"]))
        if os.path.exists(ptr):
            text = open(ptr).read()
            assert text and len(text) % 50 == 0 and text[: len(text) // 50] * 50 == text
    leftovers = [f for f in os.listdir(tmp_path) if ".tmp" in f]
    assert len(leftovers) <= 2  # a killed writer may leave its temp file, never a partial target


def test_failed_write_keeps_old_file_and_names_it(tmp_path, monkeypatch):
    path = str(tmp_path / "c.pth")
    atomic_save({"v": torch.tensor(1.0)}, path)

    def broken(obj, f):
        f.write(b"PK\x03\x04partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match=r"Cannot write checkpoint '.*c\.pth'.*No space left"):
        atomic_save({"v": torch.tensor(2.0)}, path)
    monkeypatch.undo()
    assert load_checkpoint_file(path)["v"].item() == 1.0
    assert os.listdir(tmp_path) == ["c.pth"]


def test_truncated_checkpoint_error_names_file(tmp_path):
    path = str(tmp_path / "t.pth")
    torch.save({"w": torch.zeros(1000)}, path)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(CheckpointError, match="t.pth' is incomplete or corrupt"):
        load_checkpoint_file(path)


def _encoder_cfg(out, **extra):
    return make_cfg(
        out,
        **{
            "TRAINER.NAME": "encoder",
            "MODEL.TOKENIZER.COLD_START": True,
            "SOLVER.MAX_ITER": 6,
            "SOLVER.CHECKPOINT_PERIOD": 2,
            "SOLVER.MAX_TO_KEEP": 0,
            **extra,
        },
    )


def test_resume_falls_back_to_newest_loadable_checkpoint(toy_plugin, tmp_path, caplog):
    from bridle.trainers.pretrain import EncoderPhaseTrainer

    out = str(tmp_path / "run")
    t = EncoderPhaseTrainer(_encoder_cfg(out, **{"SOLVER.MAX_ITER": 6}))
    t.resume_or_load(resume=False)
    t.train()
    # The final file is cut short (as by a non-atomic writer) and the pointer is empty.
    final = os.path.join(out, "model_final.pth")
    with open(final, "r+b") as f:
        f.truncate(100)
    open(os.path.join(out, "last_checkpoint"), "w").close()
    r = EncoderPhaseTrainer(_encoder_cfg(out))
    with caplog.at_level("WARNING"):
        r.resume_or_load(resume=True)
    assert r.start_iter == 4  # model_0000004.pth: 4 iterations done
    assert any("model_final.pth" in m and "falling back" in m for m in caplog.messages)
    r.train()
    assert load_checkpoint_file(final)["iteration"] == 6


def test_phase_finished_only_with_marker(toy_plugin, tmp_path, caplog):
    """A final checkpoint without the phase_done marker (killed right after the write, or a
    legacy unloadable one) is not trusted: --resume re-enters the phase."""
    from bridle.trainers.schedule import PHASE_DONE, ScheduleRunner

    out = str(tmp_path / "sched")
    extra = {"PRETRAIN.SCHEDULE": "['encoder_cold','tokenizer']", "SOLVER.MAX_ITER": 4, "SOLVER.CHECKPOINT_PERIOD": 2}
    run = ScheduleRunner(make_cfg(out, **extra))
    run.resume_or_load(resume=False)
    run.train()
    p0 = os.path.join(out, "0_encoder_cold")
    assert open(os.path.join(p0, PHASE_DONE)).read().strip() == "model_final.pth"
    os.remove(os.path.join(p0, PHASE_DONE))
    with open(os.path.join(p0, "model_final.pth"), "r+b") as f:
        f.truncate(64)
    run = ScheduleRunner(make_cfg(out, **extra))
    run.resume_or_load(resume=True)
    with caplog.at_level("INFO"):
        run.train()
    msgs = "\n".join(caplog.messages)
    assert "Phase 1/2 (encoder_cold) already finished" not in msgs
    assert "falling back" in msgs and "Resumed from" in msgs
    assert load_checkpoint_file(os.path.join(p0, "model_final.pth"))["iteration"] == 4
    assert os.path.exists(os.path.join(p0, PHASE_DONE))
