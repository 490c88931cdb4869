import random

import numpy as np
import pytest
import torch
from skimage import data as skdata

from bridle_video import ClipTransform


def _still_clip(frames=4):
    """The same real photo in every frame: uint8 [T, H, W, 3]."""
    photo = torch.from_numpy(np.ascontiguousarray(skdata.chelsea()[::4, ::4]))  # 75 x 113
    return photo.unsqueeze(0).repeat(frames, 1, 1, 1)


@pytest.mark.parametrize("mode", ["pretrain", "finetune", "linear_probe", "eval"])
def test_every_mode_gives_a_clip_of_the_model_input_size(video_cfg, mode):
    out = ClipTransform(video_cfg, mode)(_still_clip())
    assert out.shape == (3, 4, 32, 32) and out.dtype == torch.float32


def test_randaugment_and_erasing_only_when_finetuning(video_cfg):
    for mode in ("pretrain", "linear_probe", "eval"):
        t = ClipTransform(video_cfg, mode)
        assert t.rand_augment is None and t.erase is None, mode
    ft = ClipTransform(video_cfg, "finetune")
    assert ft.rand_augment is not None and ft.erase is not None


def test_finetune_augmentation_is_consistent_over_the_clip(video_cfg):
    video_cfg.INPUT.VIDEO.RE_PROB = 0.0
    t = ClipTransform(video_cfg, "finetune")
    torch.manual_seed(0)
    outs = [t(_still_clip()) for _ in range(8)]
    for out in outs:  # identical input frames stay identical: crop, flip and ops are per clip
        assert torch.allclose(out, out[:, :1].expand_as(out))
    assert len({round(float(o.sum()), 3) for o in outs}) > 1  # yet random across clips


def test_random_erasing_cuts_the_same_box_in_every_frame(video_cfg):
    video_cfg.INPUT.VIDEO.RE_PROB = 1.0
    video_cfg.INPUT.VIDEO.RAND_AUG_NUM_LAYERS = 0
    torch.manual_seed(0)
    random.seed(0)  # timm's RandomErasing draws from python's generator
    out = ClipTransform(video_cfg, "finetune")(_still_clip())
    erased = (out != out[:, :1]).any(0)  # [T, H, W]: where frames differ from frame 0 (noise)
    assert erased[1:].any()
    assert (erased[1:] == erased[1:2]).all()


def test_eval_is_deterministic_short_side_resize_and_center_crop(video_cfg):
    t = ClipTransform(video_cfg, "eval")
    clip = _still_clip()
    assert torch.equal(t(clip), t(clip))
    video_cfg.INPUT.VIDEO.TEST_SHORT_SIDE_SIZE = 16
    with pytest.raises(ValueError, match="TEST_SHORT_SIDE_SIZE"):
        ClipTransform(video_cfg, "eval")
