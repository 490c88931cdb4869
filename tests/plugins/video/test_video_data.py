import logging
import os

import pytest
import torch

from bridle.data import skip_none_collate
from bridle.evaluation.metrics import aggregate_views
from bridle.registry import DATASET

PAN, RAMP, SHORT, BROKEN = 0, 1, 2, 3  # rows of train.csv


def _identity_norm(cfg):
    cfg.INPUT.VIDEO.MEAN = [0.0, 0.0, 0.0]
    cfg.INPUT.VIDEO.STD = [1.0, 1.0, 1.0]


def _frame_levels(clip):
    """Mean gray level (0-255) of each frame of a [C, T, H, W] clip in [0, 1]."""
    return (clip.mean(dim=(0, 2, 3)) * 255).tolist()


def test_kinetics_csv_decodes_clips_of_the_model_input_size(video_cfg):
    ds = DATASET.get("kinetics_csv")(video_cfg, "train", "pretrain")
    assert ds.num_videos == 4 and len(ds) == 4 and ds.num_classes == 3
    item = ds[PAN]
    assert item["input"].shape == (3, 4, 32, 32) and item["input"].dtype == torch.float32
    assert item["label"].dtype == torch.long and int(item["label"]) == 0
    assert int(item["video_index"]) == PAN
    assert ds[SHORT]["input"].shape == (3, 4, 32, 32)  # 5 frames < clip span 7: last frame repeats
    video_cfg.MODEL.PATCH_EMBED.INPUT_SIZE = [8, 48, 48]
    assert DATASET.get("kinetics_csv")(video_cfg, "train", "pretrain")[RAMP]["input"].shape == (3, 8, 48, 48)


def test_kinetics_csv_samples_every_sampling_rate_frames(video_cfg, ramp_step):
    _identity_norm(video_cfg)
    ds = DATASET.get("kinetics_csv")(video_cfg, "val", "eval")  # val: one view, the middle clip
    assert ds.num_views == 1
    levels = _frame_levels(ds[1]["input"])  # ramp.mp4: 40 frames, span 7 -> start 16
    expected = [ramp_step * f for f in (16, 18, 20, 22)]
    assert all(abs(a - b) < 3 for a, b in zip(levels, expected)), (levels, expected)
    video_cfg.INPUT.VIDEO.SAMPLING_RATE = 4
    levels = _frame_levels(DATASET.get("kinetics_csv")(video_cfg, "val", "eval")[1]["input"])
    expected = [ramp_step * f for f in (13, 17, 21, 25)]  # span 13 -> start (40 - 13) // 2
    assert all(abs(a - b) < 3 for a, b in zip(levels, expected)), (levels, expected)


def test_corrupt_video_is_skipped_and_counted(video_cfg, caplog):
    ds = DATASET.get("kinetics_csv")(video_cfg, "train", "linear_probe")
    with caplog.at_level(logging.WARNING, logger="bridle.data.robust"):
        items = [ds[i] for i in range(len(ds))] + [ds[BROKEN]]
    assert items[BROKEN] is None and items[-1] is None
    assert all(items[i] is not None for i in (PAN, RAMP, SHORT))
    assert ds.num_failed == 2 and all(k.endswith("broken.mp4") for k in ds.failed_keys)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    batch = skip_none_collate(items)
    assert batch["input"].shape == (3, 3, 4, 32, 32) and int(batch["num_skipped"]) == 2
    assert batch["label"].tolist() == [0, 1, 2]


def test_multi_view_test_expands_segments_times_crops(video_cfg, ramp_step):
    _identity_norm(video_cfg)
    ds = DATASET.get("kinetics_csv")(video_cfg, "test", "eval")  # 2 segments x 3 crops
    assert ds.num_views == 6 and len(ds) == 2 * 6
    items = [ds[i] for i in range(len(ds))]
    assert [int(it["video_index"]) for it in items] == [0] * 6 + [1] * 6
    assert [int(it["view_index"]) for it in items] == list(range(6)) * 2
    assert all(int(it["label"]) == int(it["video_index"]) for it in items)  # test.csv: pan 0, ramp 1
    # ramp.mp4: segment 0 starts at frame 0, segment 1 at frame 33 (40 - span 7).
    for view, start in ((0, 0), (3, 33)):
        expected = [ramp_step * min(start + 2 * k, 39) for k in range(4)]
        levels = _frame_levels(items[6 + view]["input"])
        assert all(abs(a - b) < 3 for a, b in zip(levels, expected)), (view, levels, expected)
    # pan.mp4 (64 x 96 -> short side 32 -> 32 x 48): three different crops of the same clip.
    left, center, right = (items[v]["input"] for v in range(3))
    assert not torch.equal(left, center) and not torch.equal(center, right)
    assert torch.equal(left[..., 8:], center[..., :24])  # crop offsets 0, 8, 16 along the width
    assert torch.equal(center[..., 8:], right[..., :24])
    batch = skip_none_collate(items)
    assert torch.equal(batch["view_group"], batch["video_index"])
    # The core evaluator averages the views of a video into one prediction per video.
    logits = torch.randn(12, 3)
    probs, labels = aggregate_views(logits.softmax(1), batch["label"], batch["view_group"])
    assert probs.shape == (2, 3) and labels.tolist() == [0, 1]
    assert torch.allclose(probs[1], logits[6:].softmax(1).mean(0))


def test_repeated_augmentation_in_finetune_only(video_cfg):
    video_cfg.INPUT.VIDEO.REPEATED_AUG = 2
    ft = DATASET.get("kinetics_csv")(video_cfg, "train", "finetune")
    assert ft.num_views == 2 and len(ft) == 8
    torch.manual_seed(0)
    a, b = ft[2 * PAN], ft[2 * PAN + 1]
    assert int(a["video_index"]) == int(b["video_index"]) == PAN
    assert not torch.equal(a["input"], b["input"])  # independent augmentations
    for mode in ("pretrain", "linear_probe", "eval"):
        assert len(DATASET.get("kinetics_csv")(video_cfg, "train", mode)) == 4, mode


def test_video_folder_lists_clips_recursively_without_labels(video_cfg):
    ds = DATASET.get("video_folder")(video_cfg, "train", "pretrain")
    names = [os.path.relpath(p, video_cfg.DATASETS.VIDEO.FOLDER_ROOT) for p in ds.paths]
    assert names == ["broken.mp4", "pan.mp4", "short.mp4", os.path.join("nested", "ramp.mp4")]
    item = ds[1]
    assert "label" not in item and item["input"].shape == (3, 4, 32, 32)
    assert ds[0] is None and ds.num_failed == 1


def test_csv_errors_name_the_file_line_and_key(video_cfg, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a.mp4 0\nb.mp4 zero\n")
    video_cfg.DATASETS.VIDEO.TRAIN_CSV = str(bad)
    with pytest.raises(ValueError, match="bad.csv' line 2"):
        DATASET.get("kinetics_csv")(video_cfg, "train", "finetune")
    bad.write_text("a.mp4,0\nb.mp4,7\n")
    with pytest.raises(ValueError, match="MODEL.HEAD.NUM_CLASSES"):
        DATASET.get("kinetics_csv")(video_cfg, "train", "finetune")
    video_cfg.DATASETS.VIDEO.TRAIN_CSV = ""
    with pytest.raises(ValueError, match="DATASETS.VIDEO.TRAIN_CSV"):
        DATASET.get("kinetics_csv")(video_cfg, "train", "pretrain")
