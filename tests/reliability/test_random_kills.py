"""Exact resume at random kill points: a schedule encoder_cold, tokenizer, encoder (and joint,
with one process) with dead-code restarts on is killed again and again -- SIGKILL mid-step,
inside a checkpoint write or between a phase's last checkpoint and its done marker, SIGTERM (the
graceful stop: checkpoint, exit code 75) -- and resumed with --resume each time; at the end every
phase's weights, optimizer state and codebooks equal those of the uninterrupted run (CPU, fp32:
|diff| <= 1e-6). One process, and two ranks (gloo).

Kills are triggered by the run's own state (the step about to run, the checkpoint file being
written), never by a timer, so a loaded machine changes nothing. Every kill point lies after
each usage window (quantizer and targets) has filled three times, and restarts really happen
in the tokenizer phase (recorded by the reference run)."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from bridle.checkpoint import load_checkpoint_file
from bridle.engine.signals import EXIT_INTERRUPTED
from rel_helpers import REPO, crash_then_resume, make_cfg
from state_compare import state_diffs
from toy_plugin import toy_opts

# tools/train_net.py with three probes, set by environment variables (inherited by the ranks;
# a spawned rank re-imports this file as __mp_main__, so the probes are installed there too):
# KILL_SPEC = {"at": "step" | "write" | "done", "phase": phase dir, "iter": k, "how": ..., "rank": r}
#   "step": before step k (0-based) of the phase, on rank r (default 0);
#   "write": inside the first checkpoint write of the phase after step k started (half the
#   file written, then SIGKILL);
#   "done": the phase's model_final.pth is written, its phase_done marker not yet (SIGKILL);
#   how: "SIGKILL" (the whole process group: launcher and every rank), "SIGTERM" (this
#   process only), "SIGTERM_LAUNCHER" (the launcher, which forwards it to every rank).
# KILL_EVENTS = file: every dead-code restart is appended as {"phase", "iter", "restarted"}.
_RUNNER = r"""
import io, json, os, signal, sys, time
import torch
from bridle.engine.entry import invoke_main
from bridle.engine import HookBase, signals
from bridle.engine.defaults import DefaultTrainer
from bridle.modeling.quantizers.base import CodebookQuantizer
from bridle.utils import comm

KILL = json.loads(os.environ.get("KILL_SPEC") or "null")
EVENTS = os.environ.get("KILL_EVENTS", "")
now = {"phase": "", "iter": -1}


def fire(how):
    if how == "SIGKILL":
        os.killpg(os.getpgrp(), signal.SIGKILL)
    elif how == "SIGTERM":
        os.kill(os.getpid(), signal.SIGTERM)
    else:  # the launcher forwards it to every rank: this step ends only once it is here too
        os.kill(os.getppid(), signal.SIGTERM)
        while not signals.stop_requested():
            time.sleep(0.01)


class Probe(HookBase):
    def before_step(self):
        now["phase"], now["iter"] = os.path.basename(self.trainer.cfg.OUTPUT_DIR), self.trainer.iter
        if KILL and KILL["at"] == "step" and (KILL["phase"], KILL["iter"]) == (now["phase"], now["iter"]) \
                and comm.get_rank() == KILL.get("rank", 0):
            fire(KILL["how"])


build_hooks = DefaultTrainer.build_hooks
DefaultTrainer.build_hooks = lambda self: build_hooks(self) + [Probe()]

restart = CodebookQuantizer._restart


def logged_restart(self, inputs, dead):
    n = int(dead.sum())
    if EVENTS and n and comm.is_main_process():
        with open(EVENTS, "a") as f:
            f.write(json.dumps({"phase": now["phase"], "iter": now["iter"], "restarted": n}) + "\n")
    return restart(self, inputs, dead)


CodebookQuantizer._restart = logged_restart

real_save = torch.save


def save(obj, f, *args, **kwargs):
    name = os.path.basename(str(getattr(f, "name", "")))  # the temporary file of an atomic write
    if KILL and KILL["at"] == "write" and name.startswith(".model_") and now["phase"] == KILL["phase"] \
            and now["iter"] >= KILL["iter"]:
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.flush()
        os.fsync(f.fileno())
        fire("SIGKILL")
    return real_save(obj, f, *args, **kwargs)


torch.save = save

import bridle.trainers.schedule as schedule  # noqa: E402

write_text = schedule.atomic_write_text


def marker_write(path, text, what="file"):
    if KILL and KILL["at"] == "done" and os.path.basename(path) == schedule.PHASE_DONE \
            and os.path.basename(os.path.dirname(path)) == KILL["phase"]:
        fire("SIGKILL")
    return write_text(path, text, what)


schedule.atomic_write_text = marker_write

if __name__ == "__main__":
    sys.argv = ["train_net.py"] + sys.argv[1:]
    invoke_main()
    sys.exit(0)
"""

PHASES = ("0_encoder_cold", "1_tokenizer", "2_encoder", "3_joint")
WINDOW = 3  # MODEL.QUANTIZER.DEAD_CODE_WINDOW: also the targets' usage window
FIRST_KILL = 3 * WINDOW  # no kill before every window has filled three times


def _opts(out, max_iter, phases, **extra):
    names = [p.split("_", 1)[1] for p in phases]
    return toy_opts(
        out,
        **{
            "PRETRAIN.SCHEDULE": str(names),
            "PRETRAIN.JOINT_TOKENIZER_PERIOD": 2,  # the joint phase trains the quantizer every 2nd step
            "SOLVER.MAX_ITER": max_iter,
            "SOLVER.CHECKPOINT_PERIOD": 5,
            "SOLVER.MAX_TO_KEEP": 1,
            "MODEL.ENCODER.DROP_PATH": 0.1,  # random draws inside the step
            # 2 x 64 codes for 8 items x 8 patches per step: many codes die and are restarted.
            "MODEL.QUANTIZER.CODEBOOK_SIZE": 64,
            "MODEL.QUANTIZER.RESTART_DEAD_CODES": True,
            "MODEL.QUANTIZER.DEAD_CODE_WINDOW": WINDOW,
            "MODEL.QUANTIZER.RESTART_PERIOD": 2,
            **extra,
        },
    )


def _run(env, runner, opts, resume=False, kill=None, events="", gpus=1, timeout=600):
    """Run the schedule in its own process group; returns (exit code, stdout + stderr). The
    timeout is a safety net (a hang fails the test), not part of the pass condition."""
    env = dict(env, BRIDLE_REPO=REPO, KILL_SPEC=json.dumps(kill), KILL_EVENTS=events)
    cmd = (
        [sys.executable, runner]
        + (["--num-gpus", str(gpus)] if gpus > 1 else [])
        + (["--resume"] if resume else [])
        + opts
    )
    p = subprocess.Popen(
        cmd, env=env, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        pytest.fail(f"hung (kill {kill}):\n{out[-3000:]}")
    # Killed ranks are orphans, reaped by init: wait until none is left (the next run would find
    # the output-dir lock of a zombie rank 0 held).
    deadline = time.monotonic() + 60
    while _group_alive(p.pid):
        assert time.monotonic() < deadline, f"processes of group {p.pid} outlived the run (kill {kill})"
        time.sleep(0.05)
    return p.returncode, out


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _compare_finals(ref, out, phases):
    """Per phase: (max |model diff|, max |optimizer diff|, max |codebook diff|); asserts <= 1e-6."""
    worst = {}
    for phase in phases:
        a = load_checkpoint_file(os.path.join(ref, phase, "model_final.pth"))
        b = load_checkpoint_file(os.path.join(out, phase, "model_final.pth"))
        assert a["iteration"] == b["iteration"]
        # Every rank's data position and bad-item counts.
        assert a["trainer"]["rank_states"] == b["trainer"]["rank_states"]
        dm, do = state_diffs(a["model"], b["model"]), state_diffs(a["optimizer"], b["optimizer"])
        dc = {k: v for k, v in dm.items() if k.startswith("tokenizer.quantizer.")}
        worst[phase] = (max(dm.values()), max(do.values()), max(dc.values()))
        bad = {k: v for k, v in {**dm, **{"optimizer." + k: v for k, v in do.items()}}.items() if v > 1e-6}
        print(
            f"{phase}: max |diff| model {worst[phase][0]:.3g}, optimizer {worst[phase][1]:.3g}, "
            f"quantizer (codebooks, usage window) {worst[phase][2]:.3g}"
        )
        assert not bad, (phase, sorted(bad.items(), key=lambda kv: -kv[1])[:8])
    return worst


def _restarts(events):
    with open(events) as f:
        return [json.loads(line) for line in f]


def _kill_sequence(env, runner, opts, plan, gpus=1):
    """Run ``plan`` (kill after kill, each resumed with --resume), then finish the run."""
    for i, kill in enumerate(plan):
        code, log = _run(env, runner, opts, resume=i > 0, kill=kill, gpus=gpus)
        want = -signal.SIGKILL if kill["how"] == "SIGKILL" else EXIT_INTERRUPTED
        assert code == want, f"{kill}: exit code {code}, expected {want}\n{log[-4000:]}"
        if kill["how"] != "SIGKILL":
            assert "Training interrupted" in log, log[-3000:]
    code, log = _run(env, runner, opts, resume=True, gpus=gpus)
    assert code == 0, log[-4000:]
    assert "Resumed from" in log, log[-3000:]


@pytest.fixture
def runner(tmp_path):
    path = tmp_path / "kill_runner.py"
    path.write_text(_RUNNER)
    return str(path)


@pytest.mark.slow
def test_random_kills_in_every_phase_resume_exactly(toy_plugin, runner, tmp_path):
    max_iter, phases = 30, PHASES
    ref = str(tmp_path / "ref")
    events = str(tmp_path / "restarts.jsonl")
    code, log = _run(toy_plugin, runner, _opts(ref, max_iter, phases), events=events)
    assert code == 0, log[-4000:]
    restarts = [e for e in _restarts(events) if e["phase"] == "1_tokenizer"]
    assert len(restarts) >= 5 and all(e["restarted"] > 0 for e in restarts), restarts  # codes die, are restarted
    assert {e["phase"] for e in _restarts(events)} == {"1_tokenizer", "3_joint"}  # frozen quantizers never restart

    rng = random.Random(20261205)
    last = max_iter - 2  # a SIGTERM in the schedule's last step ends the run normally
    slots = [(p, k) for p in range(len(phases)) for k in range(FIRST_KILL, last + 1)]
    plan = [
        {"at": "step", "phase": phases[p], "iter": k, "how": rng.choice(["SIGKILL", "SIGTERM"])}
        for p, k in sorted(rng.sample(slots, 10))
    ]
    # Inside a checkpoint write (the first one of that phase at or after the drawn step).
    plan[rng.randrange(len(plan))].update(at="write", how="SIGKILL")
    # Right after a dead-code restart: SIGTERM during the restarting step (the checkpoint holds
    # the restarted codes and their fresh window), then SIGKILL at the next step.
    r = rng.choice([e["iter"] for e in restarts if FIRST_KILL <= e["iter"] < last])
    plan = [k for k in plan if not (k["phase"] == "1_tokenizer" and r <= k["iter"] <= r + 1)]
    plan += [
        {"at": "step", "phase": "1_tokenizer", "iter": r, "how": "SIGTERM"},
        {"at": "step", "phase": "1_tokenizer", "iter": r + 1, "how": "SIGKILL"},
    ]
    # After a phase's model_final.pth, before its phase_done marker (the last kill in that phase).
    plan.append({"at": "done", "phase": phases[rng.randrange(len(phases))], "iter": max_iter, "how": "SIGKILL"})
    plan.sort(key=lambda k: (phases.index(k["phase"]), k["iter"]))
    assert len(plan) >= 10 and {k["how"] for k in plan} == {"SIGKILL", "SIGTERM"}
    print("kill points:", [(k["phase"], k["at"], k["iter"], k["how"]) for k in plan])

    out = str(tmp_path / "killed")
    _kill_sequence(toy_plugin, runner, _opts(out, max_iter, phases), plan)
    _compare_finals(ref, out, phases)


@pytest.mark.slow
def test_random_kills_two_ranks_resume_exactly(toy_plugin, runner, tmp_path):
    """Two ranks (gloo): SIGTERM to the launcher (preemption: forwarded to every rank), SIGTERM
    to one rank only (the ranks agree to stop), SIGKILL of every process (a node lost), SIGKILL
    inside a checkpoint write."""
    max_iter, stop_check, phases = 20, 2, PHASES[:3]
    # Half the items unreadable, 2 per batch: some batches hold none and a rank draws another,
    # so each rank's loader runs ahead of the iteration count by its own amount.
    extra = {
        "SOLVER.STOP_CHECK_PERIOD": stop_check,
        "DATASETS.TOY.CORRUPT_EVERY": 2,
        "SOLVER.BATCH_SIZE_PER_GPU": 2,
        "DATALOADER.MAX_BAD_FRACTION": 0.9,
    }
    ref = str(tmp_path / "ref2")
    events = str(tmp_path / "restarts2.jsonl")
    code, log = _run(toy_plugin, runner, _opts(ref, max_iter, phases, **extra), events=events, gpus=2)
    assert code == 0, log[-4000:]
    assert {e["phase"] for e in _restarts(events)} == {"1_tokenizer"}
    ranks = load_checkpoint_file(os.path.join(ref, phases[-1], "model_final.pth"))["trainer"]["rank_states"]
    assert len(ranks) == 2 and all(r["empty_batches"] > 0 for r in ranks) and ranks[0] != ranks[1], ranks

    rng = random.Random(7)
    last = max_iter - 2 * stop_check - 2  # an agreed stop lands up to 2 periods later, still in the phase
    points = sorted(rng.sample([(p, k) for p in range(len(phases)) for k in range(FIRST_KILL, last + 1)], 4))
    kinds = [
        dict(at="step", how="SIGTERM_LAUNCHER"),
        dict(at="step", how="SIGTERM", rank=1),
        dict(at="step", how="SIGKILL", rank=1),
        dict(at="write", how="SIGKILL"),
    ]
    rng.shuffle(kinds)
    plan = [{"phase": phases[p], "iter": k, **kind} for (p, k), kind in zip(points, kinds)]
    assert any(k["phase"] == "1_tokenizer" for k in plan)
    print("kill points:", [(k["phase"], k["at"], k["iter"], k["how"], k.get("rank", 0)) for k in plan])

    out = str(tmp_path / "killed2")
    _kill_sequence(toy_plugin, runner, _opts(out, max_iter, phases, **extra), plan, gpus=2)
    _compare_finals(ref, out, phases)


def test_resume_after_batches_without_readable_items(toy_plugin, tmp_path):
    """Half the items unreadable, 2 per batch: some batches hold none and the loader draws
    another. A run resumed from a checkpoint written after such batches reads on where the
    uninterrupted run does and keeps its run-wide bad-item counts."""
    extra = {
        "TRAINER.NAME": "encoder",
        "MODEL.TOKENIZER.COLD_START": True,
        "SOLVER.MAX_ITER": 8,
        "SOLVER.CHECKPOINT_PERIOD": 4,
        "DATASETS.TOY.CORRUPT_EVERY": 2,
        "SOLVER.BATCH_SIZE_PER_GPU": 2,
        "DATALOADER.MAX_BAD_FRACTION": 0.9,
    }
    full, res = crash_then_resume(str(tmp_path), extra, crash_at=5)
    assert res.start_iter == 4 and res.empty_batches > 0  # the checkpoint came after empty batches
    res.train()
    assert (res.data_seen, res.data_bad, res.empty_batches) == (full.data_seen, full.data_bad, full.empty_batches)
    assert max(state_diffs(full.model_without_ddp.state_dict(), res.model_without_ddp.state_dict()).values()) == 0.0
    assert max(state_diffs(full.optimizer.state_dict()["state"], res.optimizer.state_dict()["state"]).values()) == 0.0


def test_bad_data_stop_checkpoint_then_resume_is_exact(toy_plugin, tmp_path):
    """A run stopped by DATALOADER.MAX_BAD_FRACTION while drawing a step's batches saves the
    state after the last completed step (its data position and counts too); resumed with a
    higher limit it ends as the run that never stopped."""
    from bridle.engine.train_loop import BadDataError
    from bridle.trainers.pretrain import EncoderPhaseTrainer

    extra = {
        "TRAINER.NAME": "encoder",
        "MODEL.TOKENIZER.COLD_START": True,
        "SOLVER.MAX_ITER": 40,
        "SOLVER.CHECKPOINT_PERIOD": 1,
        "SOLVER.MAX_TO_KEEP": 0,
        "DATASETS.TOY.CORRUPT_EVERY": 2,
        "SOLVER.BATCH_SIZE_PER_GPU": 2,
        "DATALOADER.MAX_BAD_FRACTION": 0.9,
    }
    full = EncoderPhaseTrainer(make_cfg(str(tmp_path / "a"), **extra))
    full.resume_or_load(resume=False)
    full.train()
    strict = {**extra, "DATALOADER.MAX_BAD_FRACTION": 0.45, "SOLVER.CHECKPOINT_PERIOD": 100}
    part = EncoderPhaseTrainer(make_cfg(str(tmp_path / "b"), **strict))
    part.resume_or_load(resume=False)
    with pytest.raises(BadDataError):
        part.train()
    stopped = load_checkpoint_file(part.last_good_checkpoint())
    same = load_checkpoint_file(os.path.join(str(tmp_path / "a"), os.path.basename(part.last_good_checkpoint())))
    assert 0 < stopped["iteration"] < 40
    assert stopped["trainer"]["rank_states"] == same["trainer"]["rank_states"]
    res = EncoderPhaseTrainer(make_cfg(str(tmp_path / "b"), **extra))
    res.resume_or_load(resume=True)
    res.train()
    assert (res.data_seen, res.data_bad, res.empty_batches) == (full.data_seen, full.data_bad, full.empty_batches)
    assert max(state_diffs(full.model_without_ddp.state_dict(), res.model_without_ddp.state_dict()).values()) == 0.0
