"""Video shards: tools/make_shards.py --video-csv -> "shards" dataset with the "video" decoder
gives the items "kinetics_csv" gives (one view); the corrupt clip is skipped at write time."""

import json

import torch

from bridle.data.build import build_dataset
from bridle.data.shards import write_shards_cli


def test_video_round_trip_equals_kinetics_csv(video_cfg, video_dir, tmp_path):
    index = write_shards_cli(
        ["--video-csv", str(video_dir / "test.csv"), "--out", str(tmp_path / "s"), "--num-workers", "1"]
    )
    meta = json.load(open(index))
    assert meta["decoder"] == "video" and meta["num_samples"] == 2
    cfg = video_cfg.clone()
    cfg.DATASETS.SHARDS.VAL_INDEX = index
    files = build_dataset(cfg, "kinetics_csv", "val", "eval")
    shards = build_dataset(cfg, "shards", "val", "eval")
    got = list(shards)
    assert len(got) == len(files) == 2
    for i, item in enumerate(got):
        ref = files[i]
        assert torch.equal(item["input"], ref["input"]) and int(item["label"]) == int(ref["label"])
        assert int(item["view_group"]) == i
    # training mode: random clips of the configured size
    cfg.DATASETS.SHARDS.TRAIN_INDEX = index
    train = build_dataset(cfg, "shards", "train", "pretrain")
    train.set_start(0, 1)
    it = iter(train)
    assert all(next(it)["input"].shape == (3, 4, 32, 32) for _ in range(3))
    # a CSV with a corrupt file: written anyway (bytes), skipped and counted when decoded
    index2 = write_shards_cli(
        ["--video-csv", str(video_dir / "train.csv"), "--out", str(tmp_path / "t"), "--num-workers", "1"]
    )
    cfg.DATASETS.SHARDS.VAL_INDEX = index2
    ds = build_dataset(cfg, "shards", "val", "eval")
    items = list(ds)
    assert len(items) == 4 and items[3] is None and ds.num_failed == 1
