import os

import pytest

import bridle_video
from bridle.config import get_cfg
from bridle.modeling import build_mask_generator, build_patch_embed
from bridle.registry import DATASET, TRAINER

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "configs", "video")


def _load(name):
    cfg = get_cfg(load_plugins=False)
    bridle_video.add_config(cfg)
    cfg.merge_from_file(os.path.join(CONFIGS, name))
    return cfg


@pytest.mark.parametrize("name", ["base_video.yaml", "finetune_k400.yaml"])
def test_video_config_builds_the_tubelet_grid_and_names_registered_entries(name):
    cfg = _load(name)
    embed = build_patch_embed(cfg, embed_dim=8)
    assert embed.grid_size == (8, 14, 14) and embed.num_patches == 1568
    assert build_mask_generator(cfg, embed.grid_size).num_masked == 8 * round(196 * 0.9)
    d = cfg.MODEL.DECODER
    assert (d.EMBED_DIM, d.DEPTH, d.NUM_HEADS) == (384, 4, 6)
    assert (cfg.MODEL.ESTIMATOR.EMBED_DIM, cfg.MODEL.ESTIMATOR.DEPTH) == (384, 4)
    assert cfg.INPUT.VIDEO.SAMPLING_RATE == 4
    for entry in (cfg.DATASETS.TRAIN, cfg.DATASETS.VAL, cfg.DATASETS.TEST):
        if entry:
            DATASET.get(entry)


def test_k400_finetune_recipe_follows_spec():
    cfg = _load("finetune_k400.yaml")
    TRAINER.get(cfg.TRAINER.NAME)
    assert cfg.TRAINER.NAME == "finetune" and cfg.MODEL.HEAD.NUM_CLASSES == 400
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.EPOCHS, cfg.SOLVER.LAYER_DECAY) == (7.5e-4, 75.0, 0.75)
    assert cfg.SOLVER.BATCH_SIZE_PER_GPU * cfg.SOLVER.ACCUM_STEPS * 8 == 384
    assert cfg.INPUT.VIDEO.REPEATED_AUG == 2
    assert (cfg.INPUT.VIDEO.TEST_NUM_SEGMENTS, cfg.INPUT.VIDEO.TEST_NUM_CROPS) == (5, 3)
    assert cfg.TEST.EVALUATORS == ["accuracy"]
    assert tuple(cfg.SOLVER.BETAS) == (0.9, 0.999) and cfg.SOLVER.WEIGHT_DECAY == 5e-4


def test_pretraining_weight_decay_is_the_authors():
    for name in ("pretrain_rq.yaml", "pretrain_vq.yaml"):
        cfg = _load(name)
        assert cfg.SOLVER.WEIGHT_DECAY == 1e-4 and tuple(cfg.SOLVER.BETAS) == (0.9, 0.95)
