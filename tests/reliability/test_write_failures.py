"""Item 8: a failing write (log, metrics, checkpoint) stops the run with an error naming the
file (disk full simulated with /dev/full or a failing torch.save)."""

import logging
import os

import pytest
import torch

from bridle.engine.defaults import default_setup
from bridle.engine.lock import release_output_dir_lock
from rel_helpers import make_cfg

_EXTRA = {
    "TRAINER.NAME": "encoder",
    "MODEL.TOKENIZER.COLD_START": True,
    "SOLVER.MAX_ITER": 4,
    "SOLVER.CHECKPOINT_PERIOD": 2,
}


def _trainer(cfg):
    from bridle.trainers.pretrain import EncoderPhaseTrainer

    t = EncoderPhaseTrainer(cfg)
    t.resume_or_load(resume=False)
    return t


def test_log_file_disk_full_stops_the_run(toy_plugin, tmp_path):
    cfg = make_cfg(str(tmp_path / "log"), **_EXTRA)
    cfg.freeze()
    default_setup(cfg)
    log = logging.getLogger("bridle")
    fh = next(
        h for h in log.handlers if isinstance(h, logging.FileHandler) and h.baseFilename.startswith(str(tmp_path))
    )
    old = fh.stream
    fh.stream = open("/dev/full", "w")
    try:
        with pytest.raises(OSError, match=r"Cannot write the log file '.*log/log.txt'.*No space left"):
            _trainer(cfg).train()
    finally:
        full, fh.stream = fh.stream, old
        try:
            full.close()
        except OSError:
            pass
        log.removeHandler(fh)
        release_output_dir_lock(cfg.OUTPUT_DIR)


def test_metrics_disk_full_stops_the_run(toy_plugin, tmp_path):
    from bridle.engine.events import JSONWriter

    t = _trainer(make_cfg(str(tmp_path / "m"), **{**_EXTRA, "LOG_PERIOD": 1}))
    w = next(w for h in t._hooks for w in getattr(h, "writers", []) if isinstance(w, JSONWriter))
    w._f.close()
    w._f = open("/dev/full", "w")
    with pytest.raises(OSError, match=r"Cannot write the metrics file '.*m/metrics.json'.*No space left"):
        t.train()


def test_checkpoint_write_failure_stops_the_run(toy_plugin, tmp_path, monkeypatch):
    t = _trainer(make_cfg(str(tmp_path / "c"), **_EXTRA))

    def full(obj, f, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match=r"Cannot write checkpoint '.*c/model_\d{7}.pth': No space left"):
        t.train()
    assert not [f for f in os.listdir(t.cfg.OUTPUT_DIR) if f.endswith(".pth") or ".tmp" in f]


def test_checkpoint_on_a_full_disk_names_file_and_cause(toy_plugin, tmp_path, monkeypatch):
    """torch.save on a full disk: its zip writer's RuntimeError ("[enforce fail at
    inline_container.cc:672] . unexpected pos ...") hides the OSError; the error names the
    checkpoint and "No space left on device", and is a one-line user error of train_net."""
    from bridle.errors import user_error_message

    t = _trainer(make_cfg(str(tmp_path / "c"), **_EXTRA))

    def full(obj, f, *a, **k):
        f.write(b"PK\x03\x04")
        try:
            raise OSError(28, "No space left on device")
        except OSError:  # what torch does next, in the zip writer's __exit__
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match=r"Cannot write checkpoint '.*c/model_\d{7}.pth': No space left on device") as e:
        t.train()
    assert e.value.errno == 28
    assert user_error_message(e.value).startswith("Cannot write checkpoint '")
    assert not [f for f in os.listdir(t.cfg.OUTPUT_DIR) if f.endswith(".pth") or ".tmp" in f]


def test_checkpoint_on_a_real_full_tmpfs(tmp_path):
    """The same on a 1 MiB tmpfs (needs root to mount one; skipped otherwise)."""
    import shutil
    import subprocess

    from bridle.checkpoint.io import atomic_save

    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if (
        os.geteuid() != 0
        or shutil.which("mount") is None
        or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        with pytest.raises(OSError, match=r"Cannot write checkpoint '.*tiny/model_final.pth': No space left on device"):
            atomic_save({"w": torch.zeros(1_000_000)}, str(mnt / "model_final.pth"))
        assert os.listdir(mnt) == []  # the partial temp file is gone
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
