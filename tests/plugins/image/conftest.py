import random

import numpy as np
import pytest
import torch

import bridle_image
from bridle.config import get_cfg


@pytest.fixture
def image_cfg():
    """Core defaults + the image keys, at a small input size (32 x 32, 8 x 8 patches)."""
    cfg = get_cfg(load_plugins=False)
    bridle_image.add_config(cfg)
    cfg.MODEL.PATCH_EMBED.NAME = "image"
    cfg.MODEL.PATCH_EMBED.INPUT_SIZE = [32, 32]
    cfg.MODEL.PATCH_EMBED.PATCH_SIZE = [8, 8]
    cfg.MODEL.HEAD.NUM_CLASSES = 10
    return cfg


@pytest.fixture(autouse=True)
def _seed():
    """timm's augmentations and Mixup draw from python's and numpy's generators."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
