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
    for cfg in (ft, lp):
        assert cfg.MODEL.HEAD.NUM_CLASSES == 1000 and cfg.TEST.EVALUATORS == ["accuracy"]
