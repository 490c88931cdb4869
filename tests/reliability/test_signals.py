"""Item 4: SIGTERM / SIGINT / SIGUSR1 stop every rank at the same step boundary with a
checkpoint, exit code 75 and a one-line message; --resume continues; ranks die with their
launcher."""

import os
import signal
import subprocess
import sys
import time

import pytest

from bridle.checkpoint import load_checkpoint_file
from bridle.engine import HookBase, signals
from rel_helpers import REPO, TRAIN_NET, make_cfg, run_train_net
from toy_plugin import toy_opts


@pytest.fixture
def clean_signals():
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    signals.clear_stop_request()
    yield
    signals.clear_stop_request()
    for s, h in old.items():
        signal.signal(s, h)


class _SignalAt(HookBase):
    def __init__(self, it, sig):
        self.it, self.sig = it, sig

    def before_step(self):  # arrives during step `it`: the run stops right after it
        if self.trainer.iter == self.it:
            os.kill(os.getpid(), self.sig)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_signal_stops_at_step_boundary_with_checkpoint(sig, toy_plugin, tmp_path, clean_signals):
    from bridle.trainers.pretrain import EncoderPhaseTrainer

    extra = {
        "TRAINER.NAME": "encoder",
        "MODEL.TOKENIZER.COLD_START": True,
        "SOLVER.MAX_ITER": 8,
        "SOLVER.CHECKPOINT_PERIOD": 1000,
    }
    cfg = make_cfg(str(tmp_path / "run"), **extra)
    assert signals.install_stop_handlers()
    t = EncoderPhaseTrainer(cfg)
    t.register_hooks([_SignalAt(2, sig)])
    t.resume_or_load(resume=False)
    with pytest.raises(signals.TrainingInterrupted) as e:
        t.train()
    name = signal.Signals(sig).name
    assert e.value.reason == f"received {name}" and e.value.iteration == 3
    assert e.value.checkpoint.endswith("model_0000003.pth") and "--resume" in str(e.value)  # 3 done
    assert load_checkpoint_file(e.value.checkpoint)["iteration"] == 3
    signals.clear_stop_request()
    r = EncoderPhaseTrainer(make_cfg(str(tmp_path / "run"), **extra))
    r.resume_or_load(resume=True)
    assert r.start_iter == 3
    r.train()
    assert load_checkpoint_file(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))["iteration"] == 8


def test_request_stop_from_another_thread(toy_plugin, tmp_path, clean_signals):
    import threading

    from bridle.trainers.pretrain import EncoderPhaseTrainer

    class Req(HookBase):
        def before_step(self):
            if self.trainer.iter == 1:
                th = threading.Thread(target=signals.request_stop, args=("submitit checkpoint",))
                th.start()
                th.join()

    t = EncoderPhaseTrainer(
        make_cfg(
            str(tmp_path / "r"), **{"TRAINER.NAME": "encoder", "MODEL.TOKENIZER.COLD_START": True, "SOLVER.MAX_ITER": 8}
        )
    )
    t.register_hooks([Req()])
    t.resume_or_load(resume=False)
    with pytest.raises(signals.TrainingInterrupted, match="submitit checkpoint"):
        t.train()
    assert signals.stop_requested() == "submitit checkpoint"


def test_schedule_resume_continues_in_the_interrupted_phase(toy_plugin, tmp_path, clean_signals):
    from bridle.trainers.schedule import ScheduleRunner

    out = str(tmp_path / "s")
    extra = {"PRETRAIN.SCHEDULE": "['encoder_cold','tokenizer']", "SOLVER.MAX_ITER": 4}
    orig = ScheduleRunner.train

    class StopInPhase2(HookBase):
        def before_step(self):
            if self.trainer.cfg.OUTPUT_DIR.endswith("1_tokenizer") and self.trainer.iter == 1:
                signals.request_stop("test")

    from bridle.engine.defaults import DefaultTrainer

    build = DefaultTrainer.build_hooks
    DefaultTrainer.build_hooks = lambda self: build(self) + [StopInPhase2()]
    try:
        run = ScheduleRunner(make_cfg(out, **extra))
        run.resume_or_load(resume=False)
        with pytest.raises(signals.TrainingInterrupted):
            orig(run)
    finally:
        DefaultTrainer.build_hooks = build
    assert load_checkpoint_file(os.path.join(out, "1_tokenizer", "model_0000002.pth"))["iteration"] == 2
    signals.clear_stop_request()
    run = ScheduleRunner(make_cfg(out, **extra))
    run.resume_or_load(resume=True)
    run.train()
    assert load_checkpoint_file(os.path.join(out, "1_tokenizer", "model_final.pth"))["iteration"] == 4


def _wait_for(path, proc, timeout=180):
    deadline = time.time() + timeout
    while not (os.path.exists(path) and os.path.getsize(path) > 0):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() < deadline, "timeout"
        time.sleep(0.05)


@pytest.mark.slow
def test_cli_sigterm_exit_code_message_and_resume(toy_plugin, tmp_path):
    out = str(tmp_path / "cli")
    opts = toy_opts(
        out,
        **{
            "TRAINER.NAME": "encoder",
            "MODEL.TOKENIZER.COLD_START": True,
            "SOLVER.MAX_ITER": 40,
            "SOLVER.CHECKPOINT_PERIOD": 1000,
            "LOG_PERIOD": 1,
            "DATASETS.TOY.SLEEP": 0.01,
        },
    )
    p = subprocess.Popen(
        [sys.executable, TRAIN_NET] + opts,
        env=toy_plugin,
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _wait_for(os.path.join(out, "metrics.json"), p)
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == signals.EXIT_INTERRUPTED, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("bridle:")]
    assert len(lines) == 1 and "received SIGTERM" in lines[0] and "--resume" in lines[0], stderr[-2000:]
    ckpt = lines[0].split("checkpoint ")[1].split(". Continue")[0]
    stopped = load_checkpoint_file(ckpt)["iteration"]
    assert 1 <= stopped < 40 and ckpt.endswith(f"model_{stopped:07d}.pth")  # one numbering
    assert f"after iteration {stopped};" in lines[0]
    r = run_train_net(["--resume"] + opts, toy_plugin)
    assert f"Resumed from {ckpt} at iteration {stopped} " in r.stdout + r.stderr
    assert load_checkpoint_file(os.path.join(out, "model_final.pth"))["iteration"] == 40


def _children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_two_ranks_stop_together_and_die_with_launcher(toy_plugin, tmp_path):
    base = {
        "TRAINER.NAME": "encoder",
        "MODEL.TOKENIZER.COLD_START": True,
        "SOLVER.MAX_ITER": 400,
        "SOLVER.CHECKPOINT_PERIOD": 1000,
        "LOG_PERIOD": 1,
        "DATASETS.TOY.SLEEP": 0.005,
        "SOLVER.STOP_CHECK_PERIOD": 3,
    }
    # SIGTERM to the launcher only: forwarded, both ranks stop at the same iteration.
    out = str(tmp_path / "ddp")
    p = subprocess.Popen(
        [sys.executable, TRAIN_NET, "--num-gpus", "2"] + toy_opts(out, **base),
        env=toy_plugin,
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _wait_for(os.path.join(out, "metrics.json"), p)
    p.send_signal(signal.SIGTERM)
    _, stderr = p.communicate(timeout=180)
    assert p.returncode == signals.EXIT_INTERRUPTED, stderr[-3000:]
    logs = [open(os.path.join(out, f)).read() for f in ("log.txt", "log.txt.rank1")]
    stops = [[line.split("at iteration ")[1] for line in log.splitlines() if "Stop requested" in line] for log in logs]
    assert len(stops[0]) == 1 and stops[0] == stops[1], stops
    assert int(stops[0][0]) % 3 == 0  # an agreement boundary

    # SIGKILL of the launcher: the ranks do not survive it.
    out2 = str(tmp_path / "orphans")
    p = subprocess.Popen(
        [sys.executable, TRAIN_NET, "--num-gpus", "2"] + toy_opts(out2, **base),
        env=toy_plugin,
        cwd=REPO,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for(os.path.join(out2, "metrics.json"), p)
    kids = _children(p.pid)
    assert len(kids) >= 2
    p.kill()
    p.wait()
    deadline = time.time() + 60
    while any(_alive(k) for k in kids) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(k) for k in kids), "ranks outlived their launcher"
