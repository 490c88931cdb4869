"""Item 1: no code runs from a checkpoint. A crafted .pth whose unpickling writes a marker file
is refused, naming the file, on every loading route; the marker never appears. The explicit
opt-in (BRIDLE_TRUST_PICKLE=1) loads trusted legacy files."""

import argparse
import os

import pytest
import torch

import bridle
from bridle.checkpoint import load_checkpoint_file
from bridle.checkpoint.io import CheckpointError
from rel_helpers import make_cfg


def _refused(fn, path, marker):
    with pytest.raises(CheckpointError, match="Refusing to load") as e:
        fn()
    assert path in str(e.value) and "BRIDLE_TRUST_PICKLE" in str(e.value)
    assert not os.path.exists(marker), "code from the checkpoint ran"


def test_loader(evil):
    path, marker = evil
    _refused(lambda: load_checkpoint_file(path), path, marker)


def test_bridle_load_encoder(evil):
    path, marker = evil
    _refused(lambda: bridle.load_encoder(path), path, marker)


def test_model_weights_of_a_phase(evil, toy_plugin, tmp_path):
    from bridle.trainers.pretrain import TokenizerPhaseTrainer

    path, marker = evil
    t = TokenizerPhaseTrainer(make_cfg(str(tmp_path / "out"), **{"MODEL.WEIGHTS": path, "TRAINER.NAME": "tokenizer"}))
    _refused(lambda: t.resume_or_load(resume=False), path, marker)


def test_model_weights_of_a_schedule(evil, toy_plugin, tmp_path):
    from bridle.trainers.schedule import ScheduleRunner

    path, marker = evil
    runner = ScheduleRunner(
        make_cfg(str(tmp_path / "out"), **{"MODEL.WEIGHTS": path, "PRETRAIN.SCHEDULE": "['tokenizer']"})
    )
    runner.resume_or_load(resume=False)
    _refused(runner.train, path, marker)


def test_schedule_resume_reads_a_finished_phase(evil, toy_plugin, tmp_path):
    """--resume takes phase 1's model_final.pth (here crafted) as phase 2's weights."""
    from bridle.trainers.schedule import PHASE_DONE, ScheduleRunner
    from rel_helpers import write_evil_checkpoint

    out = tmp_path / "out"
    marker = evil[1]
    final = write_evil_checkpoint(str(out / "0_encoder_cold" / "model_final.pth"), marker)
    (out / "0_encoder_cold" / PHASE_DONE).write_text("model_final.pth\n")
    runner = ScheduleRunner(make_cfg(str(out), **{"PRETRAIN.SCHEDULE": "['encoder_cold','tokenizer']"}))
    runner.resume_or_load(resume=True)
    _refused(runner.train, final, marker)


def test_trainer_resume_from_output_dir(evil, toy_plugin, tmp_path):
    from bridle.trainers.pretrain import EncoderPhaseTrainer
    from rel_helpers import write_evil_checkpoint

    out = tmp_path / "out"
    write_evil_checkpoint(str(out / "model_0000002.pth"), evil[1])
    (out / "last_checkpoint").write_text("model_0000002.pth")
    t = EncoderPhaseTrainer(make_cfg(str(out), **{"TRAINER.NAME": "encoder", "MODEL.TOKENIZER.COLD_START": True}))
    with pytest.raises(CheckpointError, match="no checkpoint .* can be loaded"):
        t.resume_or_load(resume=True)
    assert not os.path.exists(evil[1])


def test_finetune_weights_and_eval_only(evil, toy_plugin, tmp_path):
    from bridle.trainers.finetune import FinetuneTrainer
    from bridle.trainers.pretrain import EncoderPhaseTrainer

    path, marker = evil
    extra = {
        "MODEL.WEIGHTS": path,
        "TRAINER.NAME": "finetune",
        "MODEL.HEAD.NUM_CLASSES": 4,
        "DATASETS.TEST": "toy_signals",
    }
    t = FinetuneTrainer(make_cfg(str(tmp_path / "ft"), **extra))
    _refused(lambda: t.resume_or_load(resume=False), path, marker)
    _refused(lambda: FinetuneTrainer.eval_only(make_cfg(str(tmp_path / "ev"), **extra)), path, marker)
    # the generic --eval-only route (fvcore Checkpointer.load) too
    cfg = make_cfg(
        str(tmp_path / "ev2"), **{"MODEL.WEIGHTS": path, "TRAINER.NAME": "encoder", "MODEL.TOKENIZER.COLD_START": True}
    )
    _refused(lambda: EncoderPhaseTrainer.eval_only(cfg), path, marker)


def test_tools(evil, toy_plugin, tmp_path):
    path, marker = evil
    from bridle.checkpoint import export_encoder
    from bridle.evaluation import features, tokenize_dataset

    _refused(lambda: export_encoder(path, str(tmp_path / "enc.pth")), path, marker)
    _refused(lambda: tokenize_dataset.main(["--weights", path, "--output", str(tmp_path / "c.npz")]), path, marker)
    _refused(lambda: features.main(["--weights", path, "--out", str(tmp_path / "f.npy")]), path, marker)


@pytest.mark.slow
def test_train_net_cli_exits_nonzero_without_running_code(evil, toy_plugin, tmp_path):
    from rel_helpers import run_train_net
    from toy_plugin import toy_opts

    path, marker = evil
    opts = toy_opts(str(tmp_path / "cli"), **{"MODEL.WEIGHTS": path, "PRETRAIN.SCHEDULE": "['tokenizer']"})
    r = run_train_net(opts, toy_plugin, check=False)
    assert r.returncode != 0 and "Refusing to load" in r.stdout + r.stderr
    assert not os.path.exists(marker)


def test_trusted_legacy_opt_in(tmp_path, monkeypatch, caplog):
    """A legacy file pickling an argparse.Namespace (no code of its own): refused by default,
    loaded with BRIDLE_TRUST_PICKLE=1, with a loud warning naming the global."""
    path = str(tmp_path / "legacy.pth")
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match="argparse.Namespace"):
        load_checkpoint_file(path)
    monkeypatch.setenv("BRIDLE_TRUST_PICKLE", "1")
    with caplog.at_level("WARNING"):
        ckpt = load_checkpoint_file(path)
    assert ckpt["args"].lr == 0.1 and torch.equal(ckpt["model"]["w"], torch.ones(2))
    assert any("UNSAFE" in r.message and "argparse.Namespace" in r.message for r in caplog.records)


def test_genuine_checkpoints_load_weights_only(toy_plugin, tmp_path):
    """A full trainer checkpoint (optimizer, RNG states, eval history) loads with weights_only."""
    from bridle.trainers.pretrain import EncoderPhaseTrainer

    cfg = make_cfg(
        str(tmp_path / "g"), **{"TRAINER.NAME": "encoder", "MODEL.TOKENIZER.COLD_START": True, "SOLVER.MAX_ITER": 2}
    )
    t = EncoderPhaseTrainer(cfg)
    t.resume_or_load(resume=False)
    t.train()
    ckpt = torch.load(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"), weights_only=True)
    assert {"model", "optimizer", "trainer", "cfg"} <= set(ckpt)
