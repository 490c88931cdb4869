"""Image shards: tools/make_shards.py --image-folder -> "shards" dataset with the "image"
decoder gives the same items as "image_folder"; a file PIL cannot read is skipped at write time
and a corrupt sample inside a shard is skipped and counted at read time."""

import json
import os

import numpy as np
import torch
from PIL import Image

from bridle.config import get_cfg
from bridle.data.build import build_dataset
from bridle.data.shards import write_shards_cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _folder(root):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        os.makedirs(root / "train" / c)
        for k in range(3):
            arr = rng.integers(0, 255, (40 + 3 * k, 48, 3), dtype=np.uint8)
            ext = "png" if k == 2 else "jpg"
            Image.fromarray(arr).save(root / "train" / c / f"{k}.{ext}")
    (root / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return root


def _cfg(root, index=""):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs/image/tiny_pretrain.yaml"))
    cfg.DATASETS.IMAGE.ROOT = str(root)
    cfg.DATASETS.SHARDS.TRAIN_INDEX = index
    return cfg


def test_image_round_trip_equals_image_folder(tmp_path):
    root = _folder(tmp_path / "raw")
    index = write_shards_cli(
        ["--image-folder", str(root / "train"), "--out", str(tmp_path / "s"), "--shard-size", "4", "--num-workers", "1"]
    )
    meta = json.load(open(index))
    assert meta["decoder"] == "image" and meta["num_samples"] == 6  # broken.jpg skipped
    assert "broken.jpg" in (tmp_path / "s" / "skipped.txt").read_text()
    cfg = _cfg(root, index)
    files = build_dataset(cfg, "image_folder", "train", "eval")
    shards = build_dataset(cfg, "shards", "train", "eval")
    got = list(shards)
    good = [i for i in range(len(files)) if files[i] is not None]
    assert len(got) == len(good) == 6
    for item, i in zip(got, good):
        ref = files[i]
        assert int(item["label"]) == int(ref["label"])
        assert torch.equal(item["input"], ref["input"])
    # training mode: random crops, still [3, 32, 32]
    train = build_dataset(cfg, "shards", "train", "pretrain")
    train.set_start(0, 1)
    it = iter(train)
    assert all(next(it)["input"].shape == (3, 32, 32) for _ in range(8))


def test_corrupt_image_sample_in_shard_is_skipped_and_counted(tmp_path):
    from bridle.data.build import skip_none_collate
    from bridle.data.shards import ShardSink

    root = _folder(tmp_path / "raw")
    sink = ShardSink(str(tmp_path / "s"), decoder="image", meta={"num_classes": 2})
    for k in range(4):
        data = (root / "train" / "cat" / "0.jpg").read_bytes()
        if k == 2:
            data = data[: len(data) // 2]  # truncated JPEG
        sink.write({"jpg": data, "json": json.dumps({"label": 0}).encode()})
    cfg = _cfg(root, sink.close())
    ds = build_dataset(cfg, "shards", "train", "eval")
    batch = skip_none_collate(list(ds))
    assert int(batch["num_skipped"]) == 1 and batch["input"].shape[0] == 3
    assert ds.num_failed == 1
