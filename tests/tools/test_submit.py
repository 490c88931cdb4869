"""tools/submit.py with submitit's local executor: a schedule interrupted in its second phase by
the cluster's time-out signal (SIGUSR2) checkpoints, is requeued, resumes in that phase and ends
equal to an uninterrupted run."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CFG = os.path.join(REPO, "configs/image/tiny_pretrain.yaml")
OPTS = ["PRETRAIN.SCHEDULE", '["encoder_cold","tokenizer"]', "PRETRAIN.PHASES.ENCODER_COLD.MAX_ITER", "6",
        "PRETRAIN.PHASES.TOKENIZER.MAX_ITER", "16", "SOLVER.CHECKPOINT_PERIOD", "3", "LOG_PERIOD", "1"]


def _env():
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _task_pids(folder):
    """pids of the submitit task processes (python -m submitit.core._submit FOLDER)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cmd = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in cmd and folder.encode() in cmd:
            pids.append(int(d))
    return pids


def _final_model(out):
    state = torch.load(os.path.join(out, "1_tokenizer", "model_final.pth"), map_location="cpu", weights_only=True)
    return state["model"]


def test_parse_args_and_errors():
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import submit

    a = submit.parse_args(["--config-file", CFG, "--nodes", "2", "--gpus-per-node", "4", "--partition", "p",
                           "--cluster", "slurm", "--resume", "SOLVER.BASE_LR", "1e-4"])
    assert (a.nodes, a.gpus_per_node, a.partition, a.resume, a.opts) == (2, 4, "p", True, ["SOLVER.BASE_LR", "1e-4"])
    assert submit.train_args_of(a)[-2:] == ["SOLVER.BASE_LR", "1e-4"]
    with pytest.raises(SystemExit):
        submit.parse_args(["--config-file", CFG, "SOLVER.BASE_LR"])  # odd KEY VALUE list
    job = submit.TrainJob(["--config-file", CFG], resume=False)
    requeued = job.checkpoint()
    assert requeued.function.resume and requeued.function.train_args == ["--config-file", CFG]


@pytest.mark.slow
def test_local_job_interrupted_mid_phase_is_requeued_and_ends_equal(tmp_path):
    ref_out, out = str(tmp_path / "ref"), str(tmp_path / "job")
    subprocess.run([sys.executable, os.path.join(REPO, "tools/train_net.py"), "--config-file", CFG,
                    *OPTS, "OUTPUT_DIR", ref_out], check=True, env=_env(), cwd=str(tmp_path),
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    folder = os.path.join(out, "submitit")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "tools/submit.py"), "--config-file", CFG, "--cluster", "local",
         "--gpus-per-node", "0", "--cpus-per-task", "1", "--timeout", "20", "--wait", *OPTS, "OUTPUT_DIR", out],
        env=_env(), cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # wait until the second phase wrote its first periodic checkpoint, then send the
        # time-out signal (SIGUSR2) to the task, as the local controller / Slurm would
        trigger = os.path.join(out, "1_tokenizer", "model_0000002.pth")
        deadline = time.time() + 240
        while not os.path.exists(trigger):
            assert proc.poll() is None, proc.stdout.read()
            assert time.time() < deadline, "the job never reached the second phase"
            time.sleep(0.2)
        pids = _task_pids(folder)
        assert len(pids) == 1
        os.kill(pids[0], signal.SIGUSR2)
        stdout, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stdout
    log = "".join(open(os.path.join(folder, f)).read() for f in sorted(os.listdir(folder)) if f.endswith(".out"))
    log += "".join(open(os.path.join(folder, f)).read() for f in sorted(os.listdir(folder)) if f.endswith(".err"))
    assert "Requeued job" in log, log[-3000:]
    assert "training stopped" in log
    resumed = [line for line in log.splitlines() if "Resumed from" in line and "1_tokenizer" in line]
    assert resumed, log[-3000:]
    it = int(resumed[-1].rsplit("iteration", 1)[1].split()[0])
    assert 0 < it < 16  # resumed inside the phase, not at its start or end
    ref, got = _final_model(ref_out), _final_model(out)
    assert ref.keys() == got.keys()
    worst = max(float((ref[k].float() - got[k].float()).abs().max()) for k in ref if ref[k].numel())
    assert worst <= 1e-6, f"resumed run differs from the uninterrupted one by {worst}"


def test_after_interrupt_requeues_only_on_the_time_out_signal(tmp_path):
    """Rank 0 after the trainer's checkpoint: the time-out signal hands over to submitit's
    handler (which requeues); SIGTERM stores the --resume submission and exits 75; other ranks
    exit 75."""
    from types import SimpleNamespace

    from submitit.core.utils import DelayedSubmission

    sys.path.insert(0, os.path.join(REPO, "tools"))
    import submit

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
