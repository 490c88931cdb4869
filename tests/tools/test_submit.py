"""tools/submit.py with submitit's local executor: a schedule preempted (the cluster's time-out
signal, SIGUSR2) inside a phase checkpoints, is requeued with --resume, resumes in that phase and
ends equal to an uninterrupted run -- with one task, and with two tasks (ranks) requeued twice in
the tokenizer phase after its dead-code usage window filled and codes were restarted.

No wall-clock guess decides anything: the signal is sent while every rank is held before a known
step by the probe plugin of tests/tools/requeue_helpers.py (the rank waits there until its stop request
arrives), and the tests then wait for the job to end. Timeouts are only safety nets."""

import json
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest

import bridle.engine.submit as submit
from requeue_helpers import EVENTS_ENV, GATE_ENV, compare_finals, gate_files, read_events, release_gate, wait_for
from toy_plugin import toy_opts

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CFG = os.path.join(REPO, "configs/image/tiny_pretrain.yaml")
PHASES = ("0_encoder_cold", "1_tokenizer", "2_encoder")
WINDOW = 3  # MODEL.QUANTIZER.DEAD_CODE_WINDOW (also the targets' usage window), in forwards
STOP_CHECK = 2  # SOLVER.STOP_CHECK_PERIOD: two ranks agree on a stop within 2 such periods
SAFETY_S = 600  # a hung job fails the test after this long; never reached by a working job


def _opts(out, tokenizer_iters, encoder_iters):
    """The toy three-phase schedule, dead-code restarts on: 2 x 64 codes for 8 items x 8 patches
    per rank and step, a usage window of 3 forwards, a restart check every 2: codes die and are
    restarted throughout the tokenizer phase."""
    return toy_opts(
        out,
        **{
            "PRETRAIN.SCHEDULE": "['encoder_cold','tokenizer','encoder']",
            "SOLVER.MAX_ITER": encoder_iters,
            "PRETRAIN.PHASES.TOKENIZER.MAX_ITER": tokenizer_iters,
            "SOLVER.CHECKPOINT_PERIOD": 5,
            "SOLVER.MAX_TO_KEEP": 0,
            "SOLVER.STOP_CHECK_PERIOD": STOP_CHECK,
            "MODEL.ENCODER.DROP_PATH": 0.1,  # random draws inside the step (RNG state resumed too)
            "MODEL.QUANTIZER.CODEBOOK_SIZE": 64,
            "MODEL.QUANTIZER.RESTART_DEAD_CODES": True,
            "MODEL.QUANTIZER.DEAD_CODE_WINDOW": WINDOW,
            "MODEL.QUANTIZER.RESTART_PERIOD": 2,
        },
    )


def _job_logs(folder):
    names = sorted(f for f in os.listdir(folder) if f.endswith((".out", ".err")))
    return "".join(open(os.path.join(folder, f)).read() for f in names)


def _free_port():
    """A port free now, for the job's rendezvous (rather than the one submit.py derives from
    the job id, which another program on this machine may happen to hold)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_group(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _toy_cfg(tmp_path):
    """A config file for tools/submit.py (which requires one); toy_opts set everything else."""
    path = tmp_path / "toy_schedule.yaml"
    path.write_text('TRAINER:\n  NAME: "schedule"\n')
    return str(path)


def _reference(env, opts, tasks, tmp_path):
    """The uninterrupted run: tools/train_net.py --num-gpus <tasks>; returns its events."""
    events = str(tmp_path / "ref_events.jsonl")
    cmd = (
        [sys.executable, os.path.join(REPO, "tools/train_net.py")]
        + (["--num-gpus", str(tasks)] if tasks > 1 else [])
        + ["--config-file", _toy_cfg(tmp_path), *opts]
    )
    r = subprocess.run(
        cmd, env=dict(env, **{EVENTS_ENV: events}), cwd=str(tmp_path), capture_output=True, text=True, timeout=SAFETY_S
    )
    assert r.returncode == 0, r.stderr[-4000:]
    return read_events(events)


def _preempted_job(env, opts, tasks, rounds, tmp_path):
    """tools/submit.py --cluster local with ``tasks`` tasks; preempted once per round.

    A round is (phase, step, signalled ranks): every rank is held before ``step`` of ``phase``;
    the test sends SIGUSR2 (what Slurm / the local controller send at the time limit) to the
    signalled ranks, waits until each of them got past the hold (its stop request is set), then
    releases the others, which learn of the stop from the ranks' agreement only. Returns the
    events, the job's logs and the pids held in each round."""
    gate_dir, events = str(tmp_path / "gate"), str(tmp_path / "job_events.jsonl")
    os.makedirs(gate_dir)
    out = opts[opts.index("OUTPUT_DIR") + 1]
    folder = os.path.join(out, "submitit")
    spec = {"dir": gate_dir, "holds": [[phase, step] for phase, step, _ in rounds]}
    proc = subprocess.Popen(
        [
            sys.executable,
            os.path.join(REPO, "tools/submit.py"),
            "--config-file",
            _toy_cfg(tmp_path),
            "--cluster",
            "local",
            "--gpus-per-node",
            "0",
            "--tasks-per-node",
            str(tasks),
            "--cpus-per-task",
            "1",
            "--timeout",
            "60",
            "--wait",
            *opts,
        ],
        env=dict(env, **{GATE_ENV: json.dumps(spec), EVENTS_ENV: events, "BRIDLE_MASTER_PORT": str(_free_port())}),
        cwd=str(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    ranks, held_pids = list(range(tasks)), []
    try:
        for phase, step, signalled in rounds:
            held = wait_for(
                lambda: gate_files(gate_dir, "held", phase, step, ranks),
                f"every rank held before step {step} of {phase}",
                proc,
                SAFETY_S,
            )
            held_pids.append(sorted(int(v) for v in held.values()))
            for r in signalled:
                os.kill(int(held[r]), signal.SIGUSR2)
            passed = wait_for(
                lambda: gate_files(gate_dir, "passed", phase, step, signalled),
                f"the signalled ranks {signalled} past step {step} of {phase}",
                proc,
                SAFETY_S,
            )
            assert all("SIGUSR2" in v for v in passed.values()), passed
            for r in ranks:
                if r not in signalled:
                    release_gate(gate_dir, phase, step, r)
        stdout, _ = proc.communicate(timeout=SAFETY_S)
    finally:
        _kill_group(proc)
    logs = _job_logs(folder)
    assert proc.returncode == 0, stdout + logs[-4000:]
    return read_events(events), logs, held_pids


def _starts(events, phase):
    return [e["iter"] for e in events if e["event"] == "start" and e["phase"] == phase]


def _restarts(events):
    return [(e["phase"], e["iter"], e["restarted"]) for e in events if e["event"] == "restart"]


def _check_requeued_run(ref_events, events, logs, held_pids, rounds, tasks, iters):
    """Requeued once per round, each time resumed (with --resume) inside the held phase after the
    held step, every other phase run once from its start; the dead-code restarts are those of
    the uninterrupted run (nothing replayed, nothing lost)."""
    assert logs.count("Requeued job") == len(rounds), logs[-4000:]
    assert logs.count("training stopped") >= len(rounds) * tasks
    assert all(len(p) == tasks for p in held_pids) and len({tuple(p) for p in held_pids}) == len(rounds)
    for phase in PHASES:
        held = [step for p, step, _ in rounds if p == phase]
        starts = _starts(events, phase)
        assert _starts(ref_events, phase) == [0]
        assert len(starts) == 1 + len(held) and starts[0] == 0, (phase, starts)
        for step, start in zip(held, starts[1:]):
            assert step < start <= step + 2 * STOP_CHECK + 1 and start < iters[phase], (phase, held, starts)
    assert _restarts(events) == _restarts(ref_events)


def test_parse_args_and_errors():
    a = submit.parse_args(
        [
            "--config-file",
            CFG,
            "--nodes",
            "2",
            "--gpus-per-node",
            "4",
            "--partition",
            "p",
            "--cluster",
            "slurm",
            "--resume",
            "SOLVER.BASE_LR",
            "1e-4",
        ]
    )
    assert (a.nodes, a.gpus_per_node, a.partition, a.resume, a.opts) == (2, 4, "p", True, ["SOLVER.BASE_LR", "1e-4"])
    assert submit.train_args_of(a)[-2:] == ["SOLVER.BASE_LR", "1e-4"]
    with pytest.raises(SystemExit):
        submit.parse_args(["--config-file", CFG, "SOLVER.BASE_LR"])  # odd KEY VALUE list
    job = submit.TrainJob(["--config-file", CFG], resume=False)
    requeued = job.checkpoint()
    assert requeued.function.resume and requeued.function.train_args == ["--config-file", CFG]


def test_after_interrupt_requeues_only_on_the_time_out_signal(tmp_path):
    """Rank 0 after the trainer's checkpoint: the time-out signal hands over to submitit's
    handler (which requeues); SIGTERM stores the --resume submission and exits 75; other ranks
    exit 75."""
    from submitit.core.utils import DelayedSubmission

    calls = []
    handler = SimpleNamespace(checkpoint_and_try_requeue=lambda sig: calls.append(sig))
    pickle_path = tmp_path / "job_submitted.pkl"
    env = SimpleNamespace(global_rank=0, cluster="local", paths=SimpleNamespace(submitted_pickle=pickle_path))
    job = submit.TrainJob(["--config-file", CFG])
    job._submitit_handler, job._requeue_signal = handler, signal.SIGUSR2
    job._after_interrupt(env, "received SIGUSR2")
    assert calls == [signal.SIGUSR2] and not pickle_path.exists()
    job._requeue_signal = None  # SIGTERM
    with pytest.raises(SystemExit) as e:
        job._after_interrupt(env, "received SIGTERM")
    assert e.value.code == 75 and calls == [signal.SIGUSR2]
    stored = DelayedSubmission.load(pickle_path)
    assert stored.function.resume and stored.function.train_args == ["--config-file", CFG]
    with pytest.raises(SystemExit):
        job._after_interrupt(SimpleNamespace(global_rank=1, cluster="local"), "received SIGUSR2")


def test_requeue_signal_during_start_up_is_not_lost(monkeypatch):
    """A requeue signal caught before the task imported bridle (its handler is installed first)
    becomes a stop request once the stop machinery is set up, before training starts."""
    import importlib

    from bridle.engine import signals

    launch_mod = importlib.import_module("bridle.engine.launch")  # (bridle.engine.launch is the function)

    seen = []
    monkeypatch.setattr(launch_mod, "export_dist_env", lambda **kw: None)
    monkeypatch.setattr(launch_mod, "launch", lambda fn, n, args=(): seen.append(signals.stop_requested()))
    monkeypatch.setattr(signals, "install_stop_handlers", lambda *a: True)
    env = SimpleNamespace(
        global_rank=0,
        num_tasks=1,
        local_rank=0,
        num_nodes=1,
        cluster="local",
        job_id="1",
        hostname="h",
        hostnames=["h"],
    )
    job = submit.TrainJob(["--config-file", CFG])
    try:
        signals.request_stop("a stale request of an earlier run in this process")
        job._on_requeue_signal(signal.SIGUSR2, None)  # as if caught during the imports
        assert job._run(env) == "done"
        assert len(seen) == 1 and "SIGUSR2" in seen[0], seen
    finally:
        signals.clear_stop_request()


@pytest.mark.slow
def test_local_job_preempted_mid_phase_is_requeued_and_ends_equal(gate_env, tmp_path):
    """One task, preempted in the last phase (an encoder phase: its target-usage window filled
    more than once): requeued, resumed in that phase, every phase's final state equal."""
    iters = {"0_encoder_cold": 8, "1_tokenizer": 8, "2_encoder": 8}
    rounds = [("2_encoder", 2 * WINDOW, [0])]
    ref_events = _reference(gate_env, _opts(str(tmp_path / "ref"), 8, 8), 1, tmp_path)
    events, logs, pids = _preempted_job(gate_env, _opts(str(tmp_path / "job"), 8, 8), 1, rounds, tmp_path)
    _check_requeued_run(ref_events, events, logs, pids, rounds, 1, iters)
    report = compare_finals(str(tmp_path / "ref"), str(tmp_path / "job"), PHASES)
    print("max |diff| vs the uninterrupted run:", json.dumps(report))


@pytest.mark.slow
def test_two_task_job_preempted_twice_in_tokenizer_phase_ends_equal(gate_env, tmp_path):
    """Two tasks (gloo ranks), preempted twice inside the tokenizer phase, each time once its
    usage window had filled three times since the phase started or resumed and dead codes had
    been restarted in that stretch: the first time every rank gets the signal, the second time
    only rank 1 (rank 0 stops on the ranks' agreement and must still requeue). Final codebooks,
    usage windows, decoder and encoder weights and optimizer state of every phase equal the
    uninterrupted ``train_net.py --num-gpus 2`` run."""
    tok = 28
    iters = {"0_encoder_cold": 6, "1_tokenizer": tok, "2_encoder": 6}
    rounds = [("1_tokenizer", 3 * WINDOW, [0, 1]), ("1_tokenizer", 7 * WINDOW, [1])]
    ref_events = _reference(gate_env, _opts(str(tmp_path / "ref"), tok, 6), 2, tmp_path)
    restarts = [it for phase, it, n in _restarts(ref_events) if phase == "1_tokenizer" and n > 0]
    assert {phase for phase, _, _ in _restarts(ref_events)} == {"1_tokenizer"}  # frozen quantizers never restart
    events, logs, pids = _preempted_job(gate_env, _opts(str(tmp_path / "job"), tok, 6), 2, rounds, tmp_path)
    _check_requeued_run(ref_events, events, logs, pids, rounds, 2, iters)
    # before each preemption: three windows since the start / resume, with dead codes restarted
    starts = _starts(events, "1_tokenizer")
    for (_, hold, _), start in zip(rounds, starts):
        assert start + 3 * WINDOW <= hold, (rounds, starts)
        assert [it for it in restarts if start <= it < hold], (restarts, starts)
    report = compare_finals(str(tmp_path / "ref"), str(tmp_path / "job"), PHASES)
    print("max |diff| vs the uninterrupted run:", json.dumps(report))
