"""Item 10: a collective timeout (DIST.TIMEOUT_MINUTES) ends a job whose rank died or hangs
instead of hanging it forever."""

import subprocess
import sys
import textwrap

import pytest

import bridle.engine.entry as train_entry
from rel_helpers import REPO
from toy_plugin import toy_opts

_SCRIPT = textwrap.dedent("""
    import time
    import torch
    import torch.distributed as dist
    from bridle.engine.launch import launch

    def main_func():
        if dist.get_rank() == 1:
            time.sleep(300)  # a hung rank
        dist.all_reduce(torch.ones(1))

    if __name__ == "__main__":
        launch(main_func, 2, timeout_minutes=0.1)
""")


@pytest.mark.slow
def test_hung_rank_ends_the_job_after_the_timeout(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text(_SCRIPT)
    r = subprocess.run(
        [sys.executable, str(script)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=200,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "BRIDLE_DIST_BACKEND": "gloo"},
    )
    assert r.returncode != 0
    assert "imed out" in r.stderr or "Timeout" in r.stderr or "timeout" in r.stderr, r.stderr[-2000:]


def test_train_net_passes_the_configured_timeout(toy_plugin, tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(train_entry, "launch", lambda *a, **k: seen.update(k))
    argv = ["train_net.py", "--num-gpus", "2"] + toy_opts(str(tmp_path), **{"DIST.TIMEOUT_MINUTES": 2.5})
    monkeypatch.setattr(sys, "argv", argv)
    train_entry.invoke_main()
    assert seen["timeout_minutes"] == 2.5
