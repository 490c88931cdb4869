"""Item 8: a failing write (log, metrics, checkpoint) stops the run with an error naming the
file (disk full simulated with /dev/full or a failing torch.save)."""
import logging
import os

import pytest
import torch

from bridle.engine.defaults import default_setup
from bridle.engine.lock import release_output_dir_lock
from rel_helpers import make_cfg

_EXTRA = {"TRAINER.NAME": "encoder", "MODEL.TOKENIZER.COLD_START": True, "SOLVER.MAX_ITER": 4,
          "SOLVER.CHECKPOINT_PERIOD": 2}


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
    fh = next(h for h in log.handlers if isinstance(h, logging.FileHandler) and h.baseFilename.startswith(str(tmp_path)))
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
    with pytest.raises(OSError, match=r"Cannot write checkpoint '.*c/model_0000001.pth': No space left"):
        t.train()
    assert not [f for f in os.listdir(t.cfg.OUTPUT_DIR) if f.endswith(".pth") or ".tmp" in f]
