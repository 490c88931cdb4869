import os

import pytest

import bridle_image
from bridle.config import get_cfg
from bridle.modeling import build_mask_generator, build_patch_embed
from bridle.registry import DATASET, TRAINER, TRANSFORM

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "configs", "image")


def _load(name):
    cfg = get_cfg(load_plugins=False)
    bridle_image.add_config(cfg)
    cfg.merge_from_file(os.path.join(CONFIGS, name))
    return cfg


def test_pretraining_weight_decay_is_the_authors():
    for name in ("pretrain_rq.yaml", "pretrain_vq.yaml"):
        cfg = _load(name)
        assert cfg.SOLVER.WEIGHT_DECAY == 1e-4 and tuple(cfg.SOLVER.BETAS) == (0.9, 0.95)


@pytest.mark.parametrize("name", ["base_image.yaml", "finetune_in1k.yaml", "linprobe_in1k.yaml"])
def test_image_config_builds_the_vit_b16_grid_and_names_registered_entries(name):
    cfg = _load(name)
    embed = build_patch_embed(cfg, embed_dim=8)
    assert embed.grid_size == (14, 14)
    assert build_mask_generator(cfg, embed.grid_size).num_masked == round(196 * 0.8)
    d = cfg.MODEL.DECODER
    assert (d.EMBED_DIM, d.DEPTH, d.NUM_HEADS, d.ATTENTION) == (512, 16, 16, "global")
    for entry in (cfg.DATASETS.TRAIN, cfg.DATASETS.TEST):
        if entry:
            DATASET.get(entry)
    for entry in cfg.INPUT.BATCH_TRANSFORMS:
        TRANSFORM.get(entry)


def test_downstream_recipes_follow_spec():
    ft, lp = _load("finetune_in1k.yaml"), _load("linprobe_in1k.yaml")
    assert ft.TRAINER.NAME == "finetune" and lp.TRAINER.NAME == "linear_probe"
    TRAINER.get(ft.TRAINER.NAME), TRAINER.get(lp.TRAINER.NAME)
    assert (ft.SOLVER.BASE_LR, ft.SOLVER.EPOCHS, ft.SOLVER.LAYER_DECAY) == (5e-4, 200.0, 0.75)
    assert ft.INPUT.BATCH_TRANSFORMS == ["mixup_cutmix"] and ft.MODEL.ENCODER.DROP_PATH == 0.1
    assert lp.SOLVER.BASE_LR == 8e-3 and lp.INPUT.BATCH_TRANSFORMS == []
    # the authors' linear probe (submit_lp_img.sh, main_finetune.py defaults): 200 epochs, no
    # BatchNorm, wd 5e-4, batch 256; fine-tuning/probing AdamW betas (0.9, 0.999)
    assert (lp.SOLVER.EPOCHS, lp.SOLVER.WARMUP_EPOCHS, lp.SOLVER.WEIGHT_DECAY) == (200.0, 10.0, 5e-4)
    assert not lp.MODEL.HEAD.BATCHNORM and lp.SOLVER.BATCH_SIZE_PER_GPU * lp.SOLVER.ACCUM_STEPS * 8 == 256
    assert ft.SOLVER.WEIGHT_DECAY == 5e-4
    for cfg in (ft, lp, _load("demo_finetune.yaml"), _load("demo_linprobe.yaml")):
        assert tuple(cfg.SOLVER.BETAS) == (0.9, 0.999)
    for cfg in (ft, lp):
        assert cfg.MODEL.HEAD.NUM_CLASSES == 1000 and cfg.TEST.EVALUATORS == ["accuracy"]
