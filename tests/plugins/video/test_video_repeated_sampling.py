"""Repeated sampling (INPUT.VIDEO.NUM_SAMPLE, VideoMAE V2): one decode, several augmented clips,
flattened into the batch by the core collate; off in evaluation."""

import torch

from bridle.data.build import skip_none_collate
from bridle.registry import DATASET
from bridle_video.clip_dataset import ClipDataset

PAN = 0  # train.csv: clips/pan.mp4 0


def _count_decodes(monkeypatch):
    calls = []
    original = ClipDataset._decode

    def counting(self, path, segment):
        calls.append(path)
        return original(self, path, segment)

    monkeypatch.setattr(ClipDataset, "_decode", counting)
    return calls


def test_num_sample_decodes_once_and_returns_augmented_clips(video_cfg, monkeypatch):
    video_cfg.INPUT.VIDEO.NUM_SAMPLE = 3
    calls = _count_decodes(monkeypatch)
    for mode in ("pretrain", "finetune"):
        ds = DATASET.get("kinetics_csv")(video_cfg, "train", mode)
        assert len(ds) == 4  # the epoch is not longer
        calls.clear()
        torch.manual_seed(0)
        items = ds[PAN]
        assert len(calls) == 1, mode
        assert isinstance(items, list) and len(items) == 3
        assert all(it["input"].shape == (3, 4, 32, 32) for it in items)
        assert all(int(it["label"]) == 0 and int(it["video_index"]) == PAN for it in items)
        # independent augmentations of the same decoded frames
        assert not torch.equal(items[0]["input"], items[1]["input"]) or not torch.equal(
            items[1]["input"], items[2]["input"]
        )
        batch = skip_none_collate([items, None, ds[1]])
        assert batch["input"].shape == (6, 3, 4, 32, 32) and int(batch["num_skipped"]) == 1
        assert batch["video_index"].tolist() == [PAN] * 3 + [1] * 3


def test_num_sample_is_off_in_evaluation(video_cfg):
    video_cfg.INPUT.VIDEO.NUM_SAMPLE = 3
    item = DATASET.get("kinetics_csv")(video_cfg, "val", "eval")[0]
    assert isinstance(item, dict) and item["input"].shape == (3, 4, 32, 32)


def test_num_sample_must_be_positive(video_cfg):
    import pytest

    video_cfg.INPUT.VIDEO.NUM_SAMPLE = 0
    with pytest.raises(ValueError, match="NUM_SAMPLE"):
        DATASET.get("kinetics_csv")(video_cfg, "train", "pretrain")
