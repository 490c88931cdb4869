"""Item 9: every config error is found before the first step of the first phase, naming the
key and the expected value: value ranges, later phases' merged configs (PRETRAIN.PHASES.*.OPTS),
phase order, MODEL.HEAD.NUM_CLASSES vs the dataset's num_classes."""

import os

import pytest

from bridle.config.validate import ConfigValueError, validate_config
from rel_helpers import make_cfg, run_train_net
from toy_plugin import toy_opts


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("SOLVER.BASE_LR", -1e-3, "expected a learning rate >= 0"),
        ("SOLVER.BATCH_SIZE_PER_GPU", 0, "expected a batch size >= 1"),
        ("MODEL.MASK.RATIO", 1.5, "expected a fraction in [0, 1)"),
        ("SOLVER.NONFINITE", "ignore", "expected one of 'stop', 'skip'"),
        ("DATALOADER.MAX_BAD_FRACTION", 2.0, "expected a fraction in [0, 1]"),
        ("DIST.TIMEOUT_MINUTES", 0.0, "expected a number of minutes > 0"),
    ],
)
def test_value_ranges_name_key_and_expectation(key, value, expected, toy_plugin, tmp_path):
    cfg = make_cfg(str(tmp_path), **{key: value})
    with pytest.raises(ConfigValueError) as e:
        validate_config(cfg)
    assert f"{key} = {value!r}: {expected}" in str(e.value)


def test_all_errors_reported_at_once(toy_plugin, tmp_path):
    cfg = make_cfg(str(tmp_path), **{"SOLVER.BASE_LR": -1.0, "SOLVER.ACCUM_STEPS": 0})
    with pytest.raises(ConfigValueError, match=r"(?s)SOLVER.BASE_LR.*SOLVER.ACCUM_STEPS"):
        validate_config(cfg)


def _schedule(tmp_path, **extra):
    from bridle.trainers.schedule import ScheduleRunner

    return ScheduleRunner(make_cfg(str(tmp_path / "s"), **extra))


def test_later_phase_opts_are_validated_before_phase_one(toy_plugin, tmp_path):
    with pytest.raises(
        ConfigValueError, match=r"phase 3 'encoder' .*SOLVER.BATCH_SIZE_PER_GPU = 0: expected a batch size >= 1"
    ):
        _schedule(tmp_path, **{"PRETRAIN.PHASES.ENCODER.OPTS": "['SOLVER.BATCH_SIZE_PER_GPU','0']"})
    with pytest.raises(ConfigValueError, match=r"phase 2 'tokenizer' .*do not merge: .*SOLVER.NO_SUCH_KEY"):
        _schedule(tmp_path, **{"PRETRAIN.PHASES.TOKENIZER.OPTS": "['SOLVER.NO_SUCH_KEY','1']"})
    with pytest.raises(
        ConfigValueError, match=r"phase 2 'tokenizer' \(PRETRAIN.PHASES.TOKENIZER\): SOLVER.BASE_LR = -0.5"
    ):
        _schedule(tmp_path, **{"PRETRAIN.PHASES.TOKENIZER.OPTS": "['SOLVER.BASE_LR','-0.5']"})
    assert not os.path.exists(str(tmp_path / "s" / "0_encoder_cold"))


def test_encoder_phase_must_build_the_tokenizer_it_predicts(toy_plugin, tmp_path):
    """A larger quantizer after the cold start must be set on both the tokenizer phase and the
    encoder phase that predicts its codes; training-only settings may differ."""
    bigger = "['MODEL.QUANTIZER.CODEBOOK_SIZE','64','MODEL.QUANTIZER.NUM_LEVELS','3']"
    with pytest.raises(
        ConfigValueError,
        match=r"phase 3 'encoder' predicts the codes of the tokenizer trained in "
        r"phase 2 'tokenizer' but builds another one \(MODEL.QUANTIZER.CODEBOOK_SIZE: "
        r"64 in phase 2 vs \d+; MODEL.QUANTIZER.NUM_LEVELS: 3 in phase 2 vs \d+\)",
    ):
        _schedule(tmp_path, **{"PRETRAIN.PHASES.TOKENIZER.OPTS": bigger})
    runner = _schedule(tmp_path, **{"PRETRAIN.PHASES.TOKENIZER.OPTS": bigger, "PRETRAIN.PHASES.ENCODER.OPTS": bigger})
    assert runner is not None
    _schedule(tmp_path, **{"PRETRAIN.PHASES.TOKENIZER.OPTS": "['MODEL.QUANTIZER.DECAY','0.9']"})  # training-only


@pytest.mark.parametrize(
    "schedule,msg",
    [
        ("['encoder_cold','encoder']", "phase 2 'encoder' needs a trained tokenizer"),
        ("['tokenizer','encoder']", "phase 1 'tokenizer' needs a trained encoder"),
        ("['encoder_cold','finetune']", "entry 2 'finetune' is not a phase"),
    ],
)
def test_phase_order_and_names(schedule, msg, toy_plugin, tmp_path):
    with pytest.raises(ConfigValueError, match=msg):
        _schedule(tmp_path, **{"PRETRAIN.SCHEDULE": schedule})


def test_head_size_vs_dataset_classes(toy_plugin, tmp_path):
    from bridle.trainers.finetune import FinetuneTrainer

    with pytest.raises(
        ValueError,
        match=r"MODEL.HEAD.NUM_CLASSES = 1000 but DATASETS.TRAIN 'toy_signals' has "
        r"num_classes = 4: expected MODEL.HEAD.NUM_CLASSES 4",
    ):
        FinetuneTrainer(make_cfg(str(tmp_path / "f"), **{"TRAINER.NAME": "finetune", "MODEL.HEAD.NUM_CLASSES": 1000}))


@pytest.mark.slow
def test_cli_rejects_before_writing_anything(toy_plugin, tmp_path):
    out = str(tmp_path / "cli")
    r = run_train_net(toy_opts(out, **{"SOLVER.BASE_LR": -1.0}), toy_plugin, check=False)
    assert r.returncode != 0 and "SOLVER.BASE_LR = -1.0: expected a learning rate >= 0" in r.stderr
    assert not os.path.exists(os.path.join(out, "config.yaml"))
