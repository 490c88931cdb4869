"""User errors through tools/train_net.py: a bad config key, type or value, a missing config file,
manifest or audio file, an OUTPUT_DIR that is a file or already holds a run, a warm-up longer
than its run or phase: ONE line ``bridle: error: <what, where, what was expected>`` on stderr,
exit code 2, no traceback (unless --debug / BRIDLE_DEBUG=1). --overwrite starts afresh (saying
so in the log); --eval-only never touches a training run's files; a warm-up covering half of a
run is warned about."""

import json
import os
import subprocess
import sys

import pytest

from bridle.errors import EXIT_USER_ERROR
from rel_helpers import REPO, TRAIN_NET, run_train_net
from toy_plugin import toy_opts

ENC = {"TRAINER.NAME": "encoder", "MODEL.TOKENIZER.COLD_START": True}  # one short phase
TINY_AUDIO = os.path.join(REPO, "configs", "audio", "tiny_pretrain.yaml")


def one_line_error(r, *needles) -> str:
    """The run failed with exit code 2 and exactly one ``bridle: error:`` line, the last line of
    stderr, holding every needle; no traceback anywhere."""
    assert r.returncode == EXIT_USER_ERROR, f"exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("bridle: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], r.stderr[-3000:]
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-3000:]
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


def run(args, env, **kw):
    return run_train_net(args, env, check=False, **kw)


def test_unknown_key(toy_plugin, tmp_path):
    r = run(toy_opts(str(tmp_path / "o"), **{"SOLVER.BASE_LRR": 1.0}), toy_plugin)
    one_line_error(
        r, "Unknown config key 'SOLVER.BASE_LRR' in command-line overrides", "Nearest valid keys: SOLVER.BASE_LR"
    )
    assert not os.path.exists(tmp_path / "o")


def test_bad_type(toy_plugin, tmp_path):
    r = run(toy_opts(str(tmp_path / "o"), **{"SOLVER.BASE_LR": "abc", "SOLVER.MAX_ITER": 6}), toy_plugin)
    one_line_error(r, "SOLVER.BASE_LR = 'abc' in command-line overrides: expected a number")
    # an integer for a float key is a float, not a type error
    r = run(toy_opts(str(tmp_path / "o"), **{**ENC, "SOLVER.BASE_LR": "-1"}), toy_plugin)
    one_line_error(r, "SOLVER.BASE_LR = -1.0: expected a learning rate >= 0")


def test_bad_value_and_several_errors(toy_plugin, tmp_path):
    r = run(toy_opts(str(tmp_path / "o"), **{**ENC, "SOLVER.BASE_LR": -1.0, "SOLVER.ACCUM_STEPS": 0}), toy_plugin)
    one_line_error(
        r,
        "Invalid config (2 errors): SOLVER.BASE_LR = -1.0: expected a learning rate >= 0",
        "SOLVER.ACCUM_STEPS = 0: expected an integer >= 1",
    )


def test_missing_config_file(toy_plugin, tmp_path):
    r = run(["--config-file", str(tmp_path / "nope.yaml")], toy_plugin)
    one_line_error(r, f"--config-file '{tmp_path / 'nope.yaml'}' does not exist")


def test_missing_manifest_names_the_key(toy_plugin, tmp_path):
    missing = str(tmp_path / "nope.json")
    r = run(
        ["--config-file", TINY_AUDIO, "OUTPUT_DIR", str(tmp_path / "o"), "DATASETS.AUDIO.TRAIN_MANIFEST", missing],
        toy_plugin,
    )
    one_line_error(r, f"DATASETS.AUDIO.TRAIN_MANIFEST '{missing}' does not exist", "expected an AudioMAE JSON manifest")


def test_missing_audio_file_names_manifest_and_entry(toy_plugin, tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"data": [{"wav": "gone.wav"}]}))  # no labels: pretraining needs none
    r = run(
        [
            "--config-file",
            TINY_AUDIO,
            "OUTPUT_DIR",
            str(tmp_path / "o"),
            "DATASETS.AUDIO.TRAIN_MANIFEST",
            str(manifest),
            "TRAINER.NAME",
            "encoder",
            "MODEL.TOKENIZER.COLD_START",
            "True",
            "SOLVER.BATCH_SIZE_PER_GPU",
            "1",
        ],
        toy_plugin,
    )
    line = one_line_error(r, f"Audio file '{tmp_path / 'gone.wav'}' does not exist (manifest '{manifest}', entry 0)")
    assert "System error" not in line


def test_output_dir_is_a_file(toy_plugin, tmp_path):
    f = tmp_path / "file"
    f.write_text("not a directory")
    r = run(toy_opts(str(f), **ENC), toy_plugin)
    one_line_error(r, f"OUTPUT_DIR '{f}' is a file; expected a directory")


def _rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_existing_run_refused_then_resume_or_overwrite(toy_plugin, tmp_path):
    out = str(tmp_path / "run")
    opts = toy_opts(out, **ENC)
    run_train_net(opts, toy_plugin)
    files = sorted(os.listdir(out))
    before = {n: os.path.getmtime(os.path.join(out, n)) for n in files}
    rows = _rows(os.path.join(out, "metrics.json"))

    r = run(opts, toy_plugin)  # no --resume: refused, nothing touched
    one_line_error(
        r,
        f"OUTPUT_DIR '{out}' already holds a run (model_final.pth",
        "metrics.json",
        "--resume",
        "another OUTPUT_DIR",
        "--overwrite",
    )
    assert sorted(os.listdir(out)) == files
    assert {n: os.path.getmtime(os.path.join(out, n)) for n in files} == before
    assert _rows(os.path.join(out, "metrics.json")) == rows

    r = run(["--resume"] + opts, toy_plugin)  # the finished run stays as it is
    assert r.returncode == 0 and "Training already complete" in r.stdout, r.stderr[-2000:]
    assert _rows(os.path.join(out, "metrics.json")) == rows

    r = run(["--overwrite"] + opts, toy_plugin)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "--overwrite: removed the previous run's files from OUTPUT_DIR" in r.stdout
    assert "model_final.pth" in r.stdout.split("--overwrite: removed", 1)[1].splitlines()[0]
    assert len(_rows(os.path.join(out, "metrics.json"))) == len(rows)  # one run's rows, not two
    with open(os.path.join(out, "log.txt")) as f:
        assert f.read().count("Command line arguments") == 1  # the old log went with its run

    r = run(["--resume", "--overwrite"] + opts, toy_plugin)
    assert r.returncode == 2 and "not allowed with argument" in r.stderr


def test_existing_schedule_run_names_its_phase_dirs(toy_plugin, tmp_path):
    """A schedule's run lives in its phase directories: a run killed in phase 1 is refused too."""
    out = tmp_path / "sched"
    os.makedirs(out / "0_encoder_cold")
    (out / "0_encoder_cold" / "model_0000003.pth").write_bytes(b"x")
    (out / "0_encoder_cold" / "metrics.json").write_text('{"iteration": 2}\n')
    r = run(toy_opts(str(out)), toy_plugin)  # TRAINER.NAME schedule (the default)
    one_line_error(r, "already holds a run (0_encoder_cold/model_0000003.pth, 0_encoder_cold/metrics.json)")


def test_eval_only_leaves_the_training_run_alone(toy_plugin, tmp_path):
    out = str(tmp_path / "run")
    opts = toy_opts(out, **ENC)
    run_train_net(opts, toy_plugin)
    with open(os.path.join(out, "config.yaml")) as f:
        config = f.read()
    r = run(["--eval-only"] + opts + ["MODEL.WEIGHTS", os.path.join(out, "model_final.pth")], toy_plugin)
    assert r.returncode == 0, r.stderr[-2000:]
    with open(os.path.join(out, "config.yaml")) as f:
        assert f.read() == config
    assert os.path.isfile(os.path.join(out, "config_eval.yaml"))


def test_warmup_not_shorter_than_the_run(toy_plugin, tmp_path):
    r = run(toy_opts(str(tmp_path / "o"), **{**ENC, "SOLVER.WARMUP_ITERS": 6}), toy_plugin)
    one_line_error(
        r,
        "the warm-up (6 iterations: SOLVER.WARMUP_ITERS = 6) is not shorter than the run "
        "(6 iterations: SOLVER.MAX_ITER = 6)",
        "SOLVER.ALLOW_LONG_WARMUP True",
    )
    assert not os.path.exists(tmp_path / "o")  # refused before anything was written
    r = run(
        toy_opts(str(tmp_path / "ok"), **{**ENC, "SOLVER.WARMUP_ITERS": 6, "SOLVER.ALLOW_LONG_WARMUP": True}),
        toy_plugin,
    )
    assert r.returncode == 0 and "allowed by SOLVER.ALLOW_LONG_WARMUP" in r.stdout, r.stderr[-2000:]


def test_phase_warmup_in_epochs_longer_than_the_phase(toy_plugin, tmp_path):
    """A short MAX_ITER and a phase's WARMUP_EPOCHS (8 iterations/epoch here);
    phase 2 is refused before phase 1 starts."""
    out = tmp_path / "s"
    r = run(toy_opts(str(out), **{"PRETRAIN.PHASES.TOKENIZER.WARMUP_EPOCHS": 1.0}), toy_plugin)
    one_line_error(
        r,
        "phase 2 'tokenizer': the warm-up (8 iterations: PRETRAIN.PHASES.TOKENIZER.WARMUP_EPOCHS = 1 "
        "epoch = 8 iterations at 8 iterations/epoch) is not shorter than the phase (6 iterations: "
        "SOLVER.MAX_ITER = 6)",
    )
    assert not os.path.exists(out / "0_encoder_cold")


def test_warmup_covering_half_the_run_warns(toy_plugin, tmp_path):
    r = run(toy_opts(str(tmp_path / "o"), **{**ENC, "SOLVER.WARMUP_ITERS": 3}), toy_plugin)
    assert r.returncode == 0, r.stderr[-2000:]
    warning = [line for line in r.stdout.splitlines() if "WARNING" in line and "warm-up" in line]
    assert len(warning) == 1 and "covers 50% of the run" in warning[0] and "SOLVER.WARMUP_ITERS = 3" in warning[0]


def test_debug_shows_the_traceback(toy_plugin, tmp_path):
    opts = toy_opts(str(tmp_path / "o"), **{"SOLVER.BASE_LRR": 1.0})
    r = run(["--debug"] + opts, toy_plugin)
    assert r.returncode == 2 and "Traceback" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("bridle: error: Unknown config key 'SOLVER.BASE_LRR'")
    r = run(opts, dict(toy_plugin, BRIDLE_DEBUG="1"))
    assert r.returncode == 2 and "Traceback" in r.stderr


@pytest.mark.slow
def test_two_ranks_report_one_line(toy_plugin, tmp_path):
    """--num-gpus 2 (spawned gloo ranks): a user error in the ranks comes out as the launcher's one
    line, not a multiprocessing traceback dump."""
    f = tmp_path / "file"
    f.write_text("x")
    r = run(["--num-gpus", "2"] + toy_opts(str(f), **ENC), toy_plugin)
    one_line_error(r, f"OUTPUT_DIR '{f}' is a file")


def test_a_bug_keeps_its_traceback(toy_plugin, tmp_path):
    """Not a user error: the traceback stays (exit code 1)."""
    code = (
        "import runpy, sys; import bridle.engine.defaults as d\n"
        "def boom(*a, **k): raise ZeroDivisionError('a bug')\n"
        "d.DefaultTrainer.build_hooks = boom\n"
        f"sys.argv = [{TRAIN_NET!r}] + sys.argv[1:]\n"
        f"runpy.run_path({TRAIN_NET!r}, run_name='__main__')\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code] + toy_opts(str(tmp_path / "o"), **ENC),
        env=toy_plugin,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 1 and "Traceback" in r.stderr and "ZeroDivisionError: a bug" in r.stderr
    assert "bridle: error" not in r.stderr
