"""Item 6: one run per OUTPUT_DIR (pid, host, start time; stale locks taken over)."""

import json
import os
import socket
import subprocess
import sys

import pytest

from bridle.engine.lock import LOCK_NAME, OutputDirLocked, acquire_output_dir_lock, release_output_dir_lock
from rel_helpers import run_train_net
from toy_plugin import toy_opts


def _write_lock(d, pid, host=None):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, LOCK_NAME), "w") as f:
        json.dump(
            {
                "pid": pid,
                "host": host or socket.gethostname(),
                "start_time": "2026-01-01 00:00:00",
                "command": "train_net.py other run",
            },
            f,
        )


def test_live_owner_refuses_with_its_identity(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(str(tmp_path), other.pid)
        with pytest.raises(OutputDirLocked) as e:
            acquire_output_dir_lock(str(tmp_path))
        msg = str(e.value)
        assert f"pid {other.pid}" in msg and socket.gethostname() in msg and "2026-01-01 00:00:00" in msg
        assert "other run" in msg
    finally:
        other.kill()
        other.wait()


def test_stale_lock_of_dead_process_is_taken_over(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(str(tmp_path), dead.pid)
    with caplog.at_level("WARNING"):
        path = acquire_output_dir_lock(str(tmp_path))
    try:
        assert any("stale lock" in m for m in caplog.messages)
        info = json.load(open(path))
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname() and info["start_time"]
    finally:
        release_output_dir_lock(str(tmp_path))
    assert not os.path.exists(path)


def test_old_heartbeat_of_other_host_is_stale(tmp_path):
    _write_lock(str(tmp_path), 1, host="some-other-node")
    lock = os.path.join(str(tmp_path), LOCK_NAME)
    with pytest.raises(OutputDirLocked, match="some-other-node"):
        acquire_output_dir_lock(str(tmp_path))
    os.utime(lock, (0, 0))  # heartbeat stopped long ago
    acquire_output_dir_lock(str(tmp_path))
    release_output_dir_lock(str(tmp_path))


@pytest.mark.slow
def test_second_run_refuses(toy_plugin, tmp_path):
    out = str(tmp_path / "run")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _write_lock(out, other.pid)  # a live run holds the dir
        r = run_train_net(
            toy_opts(out, **{"TRAINER.NAME": "encoder", "MODEL.TOKENIZER.COLD_START": True}), toy_plugin, check=False
        )
        assert r.returncode != 0 and "is in use by another run" in r.stdout + r.stderr
        assert not os.path.exists(os.path.join(out, "config.yaml"))  # it wrote nothing
    finally:
        other.kill()
        other.wait()
