"""Helpers of the requeue tests (tests/tools/test_submit.py): a probe plugin for the runs they
start as subprocesses, waiting on files instead of time, and checkpoint comparison."""

import json
import os
import time

import pytest

# A test-only plugin for runs started as subprocesses (tools/train_net.py, tools/submit.py and
# the submitit tasks it starts, spawned ranks): loaded through its own bridle.plugins entry
# point wherever the config is built, it adds two probes, both off unless their environment
# variable is set (so a reference run and the run under test execute the same training code).
GATE_ENV = "BRIDLE_TEST_GATE"
EVENTS_ENV = "BRIDLE_TEST_EVENTS"

GATE_PLUGIN = r'''
"""bridle_test_gate: probes of tests/tools (test-only).

BRIDLE_TEST_GATE = JSON {"dir": D, "holds": [[phase, step], ...]}: before the step with 0-based
index ``step`` of phase directory ``phase`` (e.g. "1_tokenizer"), every rank r writes its pid to
D/held.<phase>.<step>.rank<r> and waits until a stop is requested in this process (the handler of
a stop / requeue signal calls bridle.engine.signals.request_stop) or D/release.<phase>.<step>.rank<r>
exists; then it writes D/passed.<phase>.<step>.rank<r>. A test that signals a held rank knows the
exact step the signal lands in, however slow the machine.

BRIDLE_TEST_EVENTS = file: rank 0 appends one JSON line per event: {"event": "start", "phase",
"iter", "pid"} when a phase starts training (iter = its first step, > 0 after a resume) and
{"event": "restart", "phase", "iter", "restarted"} for every dead-code restart.
"""
import json
import os
import time

from bridle.engine import HookBase, signals
from bridle.engine.defaults import DefaultTrainer
from bridle.modeling.quantizers.base import CodebookQuantizer
from bridle.utils import comm

HOLD_TIMEOUT_S = 900.0  # safety net only: a held rank nobody signals fails instead of hanging
_now = {"phase": "", "iter": -1}


def _event(**event):
    path = os.environ.get("BRIDLE_TEST_EVENTS")
    if path and comm.is_main_process():
        with open(path, "a") as f:
            f.write(json.dumps(event) + "\n")


def _write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


class Gate(HookBase):
    def before_train(self):
        t = self.trainer
        _now.update(phase=os.path.basename(t.cfg.OUTPUT_DIR), iter=t.start_iter)
        _event(event="start", phase=_now["phase"], iter=t.start_iter, pid=os.getpid())

    def before_step(self):
        t = self.trainer
        _now.update(phase=os.path.basename(t.cfg.OUTPUT_DIR), iter=t.iter)
        spec = json.loads(os.environ.get("BRIDLE_TEST_GATE") or "null")
        if spec and [_now["phase"], t.iter] in [list(h) for h in spec["holds"]]:
            _hold(spec["dir"], f"{_now['phase']}.{t.iter}.rank{comm.get_rank()}")


def _hold(d, name):
    _write(os.path.join(d, "held." + name), str(os.getpid()))
    release = os.path.join(d, "release." + name)
    deadline = time.monotonic() + HOLD_TIMEOUT_S
    while not signals.stop_requested() and not os.path.exists(release):
        if time.monotonic() > deadline:
            raise RuntimeError(f"test gate {name}: no stop request and no release in {HOLD_TIMEOUT_S} s")
        time.sleep(0.005)
    _write(os.path.join(d, "passed." + name), signals.stop_requested() or "released")


if not getattr(DefaultTrainer, "_bridle_test_gate", False):
    DefaultTrainer._bridle_test_gate = True
    _build_hooks = DefaultTrainer.build_hooks
    DefaultTrainer.build_hooks = lambda self: _build_hooks(self) + [Gate()]
    _restart = CodebookQuantizer._restart

    def _logged_restart(self, inputs, dead):
        if os.environ.get("BRIDLE_TEST_EVENTS"):
            n = int(dead.sum())
            if n:
                _event(event="restart", phase=_now["phase"], iter=_now["iter"], restarted=n)
        return _restart(self, inputs, dead)

    CodebookQuantizer._restart = _logged_restart
'''


def write_gate_plugin(root: str) -> str:
    """Write the probe plugin (package and dist-info with its bridle.plugins entry point)
    under ``root``; returns the dir for PYTHONPATH."""
    os.makedirs(os.path.join(root, "bridle_test_gate"), exist_ok=True)
    with open(os.path.join(root, "bridle_test_gate", "__init__.py"), "w") as f:
        f.write(GATE_PLUGIN)
    info = os.path.join(root, "bridle_test_gate-0.1.dist-info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\nName: bridle-test-gate\nVersion: 0.1\n")
    with open(os.path.join(info, "entry_points.txt"), "w") as f:
        f.write("[bridle.plugins]\ntest_gate = bridle_test_gate\n")
    return root


def wait_for(condition, what, proc=None, timeout=600.0, period=0.05):
    """Poll ``condition()`` until it returns a truthy value (returned). The timeout is a safety
    net against a hang, never the pass condition; ``proc`` exiting first fails at once."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the job exited ({proc.returncode}) while waiting for {what}:\n{out[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout:.0f} s")
        time.sleep(period)


def gate_files(gate_dir, kind, phase, step, ranks):
    """{rank: content} of the gate's ``kind`` files (held / passed) of one hold, or None until
    every rank in ``ranks`` wrote its file."""
    out = {}
    for r in ranks:
        path = os.path.join(gate_dir, f"{kind}.{phase}.{step}.rank{r}")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            out[r] = f.read()
    return out


def release_gate(gate_dir, phase, step, rank):
    with open(os.path.join(gate_dir, f"release.{phase}.{step}.rank{rank}"), "w") as f:
        f.write("released by the test\n")


def read_events(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def state_diffs(a, b, prefix=""):
    """See tests/state_compare.py (imported here, in the test process only: this module is also
    loaded as a plugin by the job's ranks, whose path holds only this folder)."""
    from state_compare import state_diffs as diffs

    return diffs(a, b, prefix)


def compare_finals(ref_dir, out_dir, phases, tol=1e-6):
    """Per phase directory: max |diff| between two runs' final checkpoints -- whole model,
    optimizer state, trainer state (RNG states), codebook, usage windows (quantizer's and
    targets'), decoder, encoder -- asserting every tensor <= tol, and equal iteration counts."""
    from bridle.checkpoint import load_checkpoint_file

    report = {}
    for phase in phases:
        a = load_checkpoint_file(os.path.join(ref_dir, phase, "model_final.pth"))
        b = load_checkpoint_file(os.path.join(out_dir, phase, "model_final.pth"))
        assert a["iteration"] == b["iteration"], (phase, a["iteration"], b["iteration"])
        dm, do = state_diffs(a["model"], b["model"]), state_diffs(a["optimizer"], b["optimizer"])
        dt = state_diffs(a.get("trainer", {}), b.get("trainer", {}))  # RNG states of every rank, counters

        def worst(keep):
            vals = [v for k, v in dm.items() if keep(k)]
            return max(vals) if vals else None

        report[phase] = {
            "model": max(dm.values()),
            "optimizer": max(do.values()),
            "trainer": max(dt.values(), default=0.0),
            "codebook": worst(lambda k: k.startswith("tokenizer.quantizer.") and ".window." not in k),
            "usage_windows": worst(lambda k: ".window." in k or k.startswith("target_usage.")),
            "decoder": worst(lambda k: k.startswith("decoder.")),
            "encoder": worst(lambda k: k.startswith("encoder.")),
        }
        every = {**dm, **{"optimizer." + k: v for k, v in do.items()}, **{"trainer." + k: v for k, v in dt.items()}}
        bad = {k: v for k, v in every.items() if v > tol}
        assert not bad, (phase, sorted(bad.items(), key=lambda kv: -kv[1])[:8])
    return report
