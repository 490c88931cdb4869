"""The audio recipes carry the authors' values (their submit_*.sh scripts and main_*.py defaults)."""

import os

import pytest

import bridle_audio
from bridle.config import get_cfg
from bridle.registry import SAMPLER
from bridle.trainers.schedule import phase_config

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "configs", "audio")
DOWNSTREAM = [
    "finetune_as2m.yaml",
    "finetune_as20k.yaml",
    "finetune_esc50.yaml",
    "linprobe_as20k.yaml",
    "linprobe_as2m.yaml",
    "demo_finetune.yaml",
    "demo_linprobe.yaml",
]


def _load(name):
    cfg = get_cfg(load_plugins=False)
    bridle_audio.add_config(cfg)
    cfg.merge_from_file(os.path.join(CONFIGS, name))
    return cfg


def _effective_batch(cfg, gpus=8):
    return cfg.SOLVER.BATCH_SIZE_PER_GPU * cfg.SOLVER.ACCUM_STEPS * gpus


@pytest.mark.parametrize("name", DOWNSTREAM)
def test_downstream_recipes_use_finetuning_betas(name):
    assert tuple(_load(name).SOLVER.BETAS) == (0.9, 0.999)


@pytest.mark.parametrize("name", ["pretrain_rq.yaml", "pretrain_vq.yaml", "pretrain_joint.yaml"])
def test_pretraining_keeps_pretraining_betas_and_no_roll(name):
    cfg = _load(name)
    assert tuple(cfg.SOLVER.BETAS) == (0.9, 0.95) and cfg.SOLVER.WEIGHT_DECAY == 1e-4
    assert not cfg.INPUT.AUDIO.ROLL and cfg.INPUT.AUDIO.GAIN  # only the random gain acts, as the authors'


def test_as2m_finetune_recipe():
    cfg = _load("finetune_as2m.yaml")
    assert _effective_batch(cfg) == 256
    assert cfg.DATALOADER.SAMPLER_TRAIN == "WeightedSampler" and not cfg.DATALOADER.WEIGHTED_SAMPLER_REPLACEMENT
    assert cfg.DATALOADER.SAMPLES_PER_EPOCH == 200000
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.EPOCHS, cfg.SOLVER.WARMUP_EPOCHS, cfg.SOLVER.WEIGHT_DECAY) == (
        2e-4,
        200.0,
        10.0,
        5e-4,
    )


def test_as20k_finetune_is_epochs_over_its_own_clips():
    cfg = _load("finetune_as20k.yaml")
    assert cfg.DATALOADER.SAMPLES_PER_EPOCH == 0 and cfg.DATALOADER.SAMPLER_TRAIN == "TrainingSampler"
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.EPOCHS, cfg.SOLVER.WARMUP_EPOCHS) == (4e-4, 150.0, 10.0)
    assert _effective_batch(cfg) == 256
    # about 12k iterations over the ~20.5k balanced clips, not the 117k of 200k-draw epochs
    iters = cfg.SOLVER.EPOCHS * 20550 / _effective_batch(cfg)
    assert 11000 < iters < 13000


def test_esc50_and_linear_probes():
    esc = _load("finetune_esc50.yaml")
    assert (esc.SOLVER.WARMUP_EPOCHS, esc.SOLVER.EPOCHS, esc.SOLVER.BASE_LR, _effective_batch(esc)) == (
        20.0,
        300.0,
        2e-3,
        64,
    )
    lp2m = _load("linprobe_as2m.yaml")
    assert lp2m.TRAINER.NAME == "linear_probe" and lp2m.SOLVER.BASE_LR == 4e-3
    assert (lp2m.SOLVER.EPOCHS, lp2m.SOLVER.WARMUP_EPOCHS, _effective_batch(lp2m)) == (250.0, 10.0, 256)
    assert lp2m.DATALOADER.SAMPLER_TRAIN in SAMPLER.names() and not lp2m.DATALOADER.WEIGHTED_SAMPLER_REPLACEMENT
    lp20k = _load("linprobe_as20k.yaml")
    assert (lp20k.SOLVER.BASE_LR, lp20k.SOLVER.EPOCHS, lp20k.SOLVER.WARMUP_EPOCHS) == (5e-3, 300.0, 8.0)


def test_joint_recipe():
    cfg = _load("pretrain_joint.yaml")
    assert list(cfg.PRETRAIN.SCHEDULE) == ["joint"]
    assert cfg.PRETRAIN.JOINT_RATIO == 0.2 and cfg.PRETRAIN.JOINT_TOKENIZER_PERIOD in (4, 5)
    pcfg = phase_config(cfg, 0, "joint", "")
    assert pcfg.TRAINER.NAME == "joint" and not pcfg.MODEL.TOKENIZER.COLD_START
    assert (pcfg.SOLVER.EPOCHS, pcfg.SOLVER.WARMUP_EPOCHS, pcfg.SOLVER.BASE_LR) == (200.0, 10.0, 5e-4)
    assert _effective_batch(pcfg) == 1024


def test_audio_decoder_block_is_the_measured_choice():
    # README "Decoder block": pre-norm learned at least as well as swin_v2 for less compute
    cfg = _load("pretrain_rq.yaml")
    assert cfg.MODEL.DECODER.BLOCK == "prenorm" and cfg.MODEL.DECODER.ATTENTION == "window"
