"""The core "shards" dataset: round trip, exactly-once split over ranks x workers, resume
mid-epoch, corrupt samples skipped and counted, random access."""

import json
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bridle.config import get_cfg
from bridle.data.build import skip_none_collate
from bridle.data.shards import (
    ShardedDataset,
    ShardSink,
    build_shards,
    decode_tensor_sample,
    encode_tensor_item,
    read_index,
    shuffle_order,
)


def _item(i):
    g = torch.Generator().manual_seed(i)
    return {"input": torch.randn(3, 4, generator=g), "label": torch.tensor(i % 5), "index": torch.tensor(i)}


def _write(out, n, per_shard):
    sink = ShardSink(str(out), decoder="tensors", meta={"num_classes": 5}, max_count=per_shard)
    for i in range(n):
        sink.write(encode_tensor_item(_item(i)))
    return sink.close()


def _dataset(index_path, train=True, rank=0, world=1, buffer=8, seed=3):
    return ShardedDataset(
        read_index(index_path),
        decode_tensor_sample,
        train=train,
        seed=seed,
        buffer_size=buffer,
        rank=rank,
        world_size=world,
    )


def _indices(batches):
    return [int(i) for b in batches for i in b["index"]]


def test_round_trip_items_equal_originals(tmp_path):
    path = _write(tmp_path, 23, per_shard=5)
    index = json.load(open(path))
    assert [s["num_samples"] for s in index["shards"]] == [5, 5, 5, 5, 3]
    assert index["num_samples"] == 23 and index["decoder"] == "tensors"
    ds = _dataset(path, train=False)
    assert len(ds) == 23
    items = list(ds)
    assert len(items) == 23
    for i, it in enumerate(items):
        ref = _item(i)
        assert torch.equal(it["input"], ref["input"]) and int(it["label"]) == int(ref["label"])
        assert int(it["index"]) == i
    # random access gives the same items, through the offset sidecars or by scanning tar headers
    assert os.path.isfile(os.path.join(tmp_path, "shard-000001.tar.idx.json"))
    for i in (0, 7, 22):
        assert torch.equal(ds[i]["input"], _item(i)["input"])
    for f in os.listdir(tmp_path):
        if f.endswith(".idx.json"):
            os.remove(os.path.join(tmp_path, f))
    ds2 = _dataset(path, train=False)
    for i in (22, 3, 14):
        assert torch.equal(ds2[i]["input"], _item(i)["input"]) and int(ds2[i]["index"]) == i


def test_shuffle_order_is_a_bounded_permutation():
    rng = np.random.default_rng(0)
    order = shuffle_order(500, 16, rng)
    assert sorted(order) == list(range(500)) and order != list(range(500))
    # a sample is never emitted before the stream reached it, nor held longer than the buffer allows
    assert all(i <= k + 15 for k, i in enumerate(order))


@pytest.mark.parametrize("per_shard", [5, 20])  # 8 shards (>= 4 slots) and 2 shards (< 4 slots: parts)
def test_each_sample_once_per_epoch_across_2_ranks_x_2_workers(tmp_path, per_shard):
    path = _write(tmp_path, 40, per_shard=per_shard)
    seen_epochs = []
    for epoch_samples in range(2):
        seen_epochs.append([])
    for rank in range(2):
        ds = _dataset(path, rank=rank, world=2)
        sizes = [ds.slot_epoch_sizes(e, 4) for e in range(2)]
        ds.set_start(0, 1)
        loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=skip_none_collate)
        it = iter(loader)
        # epoch sizes of this rank's two slots are equal here (equal shards), so round robin
        # over the two workers takes exactly one epoch of each in 2 * size batches
        for e in range(2):
            s0, s1 = sizes[e][rank * 2], sizes[e][rank * 2 + 1]
            assert s0 == s1
            seen_epochs[e] += _indices([next(it) for _ in range(s0 + s1)])
        del it
    for e in range(2):
        assert sorted(seen_epochs[e]) == list(range(40)), f"epoch {e}"
    assert seen_epochs[0] != seen_epochs[1]  # reshuffled


def test_resume_mid_epoch_continues_without_repeats_or_gaps(tmp_path):
    path = _write(tmp_path, 36, per_shard=6)
    bs, total, stop = 3, 16, 7  # 16 batches = 48 samples: crosses an epoch boundary of this rank
    ref_ds = _dataset(path, rank=1, world=2)
    ref_ds.set_start(0, bs)
    ref = list(_take(ref_ds, bs, total))
    first = list(_take(_started(path, 0, bs), bs, stop))
    rest = list(_take(_started(path, stop * bs, bs), bs, total - stop))
    assert first == ref[:stop] and rest == ref[stop:]
    idx = [i for b in ref for i in b]
    # every sample of this rank's 18 per epoch appears once before any repeats
    assert len(set(idx[:18])) == 18


def _started(path, consumed, bs):
    ds = _dataset(path, rank=1, world=2)
    ds.set_start(consumed, bs)
    return ds


def _take(ds, bs, n):
    loader = DataLoader(ds, batch_size=bs, num_workers=2, collate_fn=skip_none_collate)
    it = iter(loader)
    for _ in range(n):
        b = next(it)
        yield tuple(int(i) for i in b["index"])


def test_corrupt_sample_is_skipped_and_counted(tmp_path):
    sink = ShardSink(str(tmp_path), decoder="tensors", max_count=4)
    for i in range(8):
        fields = encode_tensor_item(_item(i))
        if i == 5:
            fields["input.npy"] = b"\x93NUMPY garbage, not an array"
        sink.write(fields)
    path = sink.close()
    ds = _dataset(path, train=False)
    loader = DataLoader(ds, batch_size=4, num_workers=0, collate_fn=skip_none_collate)
    batches = list(loader)
    assert [int(b["num_skipped"]) for b in batches] == [0, 1]
    assert _indices(batches) == [0, 1, 2, 3, 4, 6, 7]
    assert ds.num_failed == 1 and "shard-000001.tar#1" in ds.failed_keys[0]
    # through the training loader the skipped sample is also named (bad_items)
    from bridle.data.build import build_train_loader

    cfg = get_cfg()
    cfg.SOLVER.BATCH_SIZE_PER_GPU, cfg.DATALOADER.NUM_WORKERS = 8, 0
    batch = next(iter(build_train_loader(cfg, _dataset(path, buffer=1), 0)))
    assert int(batch["num_skipped"]) == 1 and len(batch["input"]) == 7
    assert any("shard-000001.tar#1" in d and "ValueError" in d for d in batch["bad_items"])


def test_truncated_shard_counts_its_missing_samples(tmp_path):
    path = _write(tmp_path, 8, per_shard=4)
    shard = os.path.join(tmp_path, "shard-000001.tar")
    data = open(shard, "rb").read()
    open(shard, "wb").write(data[: len(data) // 3])
    ds = _dataset(path, train=False)
    items = list(ds)
    assert len(items) == 8  # positions are kept
    good = [int(it["index"]) for it in items if it is not None]
    assert good[:4] == [0, 1, 2, 3] and len(good) < 8
    assert ds.num_failed == 8 - len(good)


def test_shards_dataset_entry_and_errors(tmp_path):
    path = _write(tmp_path, 10, per_shard=4)
    cfg = get_cfg()
    cfg.DATASETS.SHARDS.TRAIN_INDEX = str(tmp_path)  # a directory holding index.json
    ds = build_shards(cfg, "train", "pretrain")
    assert len(ds) == 10 and ds.train and ds.num_classes == 5
    assert not build_shards(cfg, "train", "eval").train
    with pytest.raises(ValueError, match="DATASETS.SHARDS.VAL_INDEX"):
        build_shards(cfg, "val", "eval")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "bridle-shards", "shards": [{"name": "x.tar"}]}))
    with pytest.raises(ValueError, match=r"shards\[0\]"):
        read_index(str(bad))
    assert path.endswith("index.json")


@pytest.mark.slow
def test_training_on_shards_resumes_to_the_same_weights(tmp_path):
    """train_net on a "shards" dataset with 2 loader workers: resuming from the iteration-4
    checkpoint ends with the uninterrupted run's weights (data position + per-item seeds)."""
    import shutil
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    cfg_file = os.path.join(repo, "configs/image/tiny_pretrain.yaml")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(
        [
            sys.executable,
            os.path.join(repo, "tools/make_shards.py"),
            "--dataset",
            "digits",
            "--config-file",
            cfg_file,
            "--out",
            str(tmp_path / "s"),
            "--shard-size",
            "150",
            "--num-workers",
            "0",
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    opts = [
        "TRAINER.NAME",
        "encoder",
        "MODEL.TOKENIZER.COLD_START",
        "True",
        "DATASETS.TRAIN",
        "shards",
        "DATASETS.SHARDS.TRAIN_INDEX",
        str(tmp_path / "s"),
        "DATASETS.SHARDS.SHUFFLE_BUFFER",
        "50",
        "DATALOADER.NUM_WORKERS",
        "2",
        "SOLVER.MAX_ITER",
        "8",
        "SOLVER.CHECKPOINT_PERIOD",
        "4",
    ]

    def run(out, *extra):
        subprocess.run(
            [
                sys.executable,
                os.path.join(repo, "tools/train_net.py"),
                "--config-file",
                cfg_file,
                *extra,
                *opts,
                "OUTPUT_DIR",
                str(out),
            ],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    run(tmp_path / "a")
    b = tmp_path / "b"
    os.makedirs(b)
    shutil.copy(tmp_path / "a" / "model_0000004.pth", b / "model_0000004.pth")
    (b / "last_checkpoint").write_text("model_0000004.pth")
    run(b, "--resume")
    ref = torch.load(tmp_path / "a" / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    got = torch.load(b / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    worst = max(float((ref[k].float() - got[k].float()).abs().max()) for k in ref if ref[k].numel())
    assert worst <= 1e-6, worst


def test_shard_recipes_keep_their_base_recipe():
    import glob

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    files = sorted(glob.glob(os.path.join(repo, "configs", "*", "*_shards.yaml")))
    assert len(files) == 6
    for path in files:
        cfg, base = get_cfg(), get_cfg()
        cfg.merge_from_file(path)
        base.merge_from_file(path.replace("_shards.yaml", ".yaml"))
        assert cfg.DATASETS.TRAIN == "shards" and cfg.DATASETS.SHARDS.TRAIN_INDEX.endswith("index.json"), path
        assert cfg.DATALOADER.SAMPLER_TRAIN == "TrainingSampler", path
        assert cfg.MODEL == base.MODEL and cfg.PRETRAIN == base.PRETRAIN, path  # same model and schedule


def test_sample_payload_picks_the_first_field_and_names_a_sample_without_one():
    from bridle.data.shards import sample_payload

    sample = {"__key__": "k7", "wav": b"w", "flac": b"f", "json": b'{"label": 3}'}
    assert sample_payload(sample, ("flac", "wav"), "clip") == ("k7", "flac", {"label": 3})
    assert sample_payload({"__key__": "k8", "wav": b"w"}, ("flac", "wav"), "clip") == ("k8", "wav", {})
    with pytest.raises(KeyError, match=r"sample k9 has no clip field \(one of \['flac'\]\); fields: \['json', 'txt'\]"):
        sample_payload({"__key__": "k9", "txt": b"", "json": b"{}"}, ("flac",), "clip", KeyError)
