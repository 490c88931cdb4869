"""Audio shards: tools/make_shards.py --manifest (FLAC) -> "shards" dataset with the "audio"
decoder gives the same items as the "audioset_manifest" dataset; corrupt clips are skipped."""

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from bridle.config import get_cfg
from bridle.data.build import build_dataset
from bridle.data.shards import write_shards_cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _clips(root):
    rng = np.random.default_rng(0)
    os.makedirs(root / "audio", exist_ok=True)
    specs = [
        ("a.wav", 16000, 1, 1.3, "PCM_16"),
        ("b.wav", 44100, 2, 0.7, "PCM_16"),
        ("c.flac", 16000, 1, 2.1, "PCM_16"),
        ("d.wav", 22050, 1, 0.4, "PCM_24"),
        ("e.wav", 16000, 1, 1.0, "PCM_16"),
    ]
    entries = []
    for k, (name, sr, ch, sec, sub) in enumerate(specs):
        x = 0.3 * rng.standard_normal((int(sr * sec), ch)).clip(-3, 3) / 3
        sf.write(str(root / "audio" / name), x, sr, subtype=sub)
        entries.append({"wav": f"audio/{name}", "labels": ["/m/a", "/m/b,/m/c", "/m/c", "/m/a,/m/c", "/m/b"][k]})
    (root / "labels.csv").write_text("index,mid,display_name\n0,/m/a,A\n1,/m/b,B\n2,/m/c,C\n")
    (root / "train.json").write_text(json.dumps({"data": entries}))
    return root


def _cfg(root, **extra):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs/audio/tiny_pretrain.yaml"))
    cfg.DATASETS.AUDIO.TRAIN_MANIFEST = str(root / "train.json")
    cfg.DATASETS.AUDIO.LABEL_CSV = str(root / "labels.csv")
    for k, v in extra.items():
        cfg.merge_from_list([k, v])
    return cfg


def test_audio_round_trip_equals_manifest_dataset(tmp_path):
    root = _clips(tmp_path / "raw")
    out = tmp_path / "shards"
    index = write_shards_cli(
        [
            "--manifest",
            str(root / "train.json"),
            "--label-csv",
            str(root / "labels.csv"),
            "--out",
            str(out),
            "--shard-size",
            "2",
            "--num-workers",
            "1",
        ]
    )
    meta = json.load(open(index))
    assert meta["decoder"] == "audio" and meta["num_samples"] == 5 and len(meta["shards"]) == 3
    assert meta["meta"]["num_classes"] == 3 and meta["meta"]["multi_label"]
    cfg = _cfg(root, **{"DATASETS.SHARDS.TRAIN_INDEX": index})
    files = build_dataset(cfg, "audioset_manifest", "train", "eval")
    shards = build_dataset(cfg, "shards", "train", "eval")
    got = list(shards)
    assert len(got) == len(files) == 5
    for i, item in enumerate(got):
        ref = files[i]
        assert int(item["index"]) == i
        assert torch.equal(item["label"], ref["label"])
        assert item["input"].shape == ref["input"].shape == (128, 32)
        assert torch.equal(item["input"], ref["input"]), f"clip {i}"
    # the stored clips are FLAC
    import tarfile

    with tarfile.open(out / "shard-000000.tar") as t:
        assert sorted(m.name for m in t.getmembers()) == [
            "000000000.flac",
            "000000000.json",
            "000000001.flac",
            "000000001.json",
        ]


def test_audio_training_modes_and_corrupt_clip(tmp_path):
    from bridle.data.shards import ShardSink
    from bridle_audio.shards import encode_audio_file

    root = _clips(tmp_path / "raw")
    sink = ShardSink(str(tmp_path / "s"), decoder="audio", meta={"num_classes": 3, "multi_label": True})
    for i, name in enumerate(["a.wav", "c.flac", "e.wav"]):
        ext, data = encode_audio_file(str(root / "audio" / name))
        if i == 1:
            data = data[:40] + b"\0" * 200  # corrupt FLAC
        sink.write({ext: data, "json": json.dumps({"index": i, "labels": [i]}).encode()})
    index = sink.close()
    cfg = _cfg(root, **{"DATASETS.SHARDS.TRAIN_INDEX": index, "INPUT.AUDIO.MIXUP_PROB": "1.0"})
    for mode in ("pretrain", "finetune"):
        ds = build_dataset(cfg, "shards", "train", mode)
        ds.set_start(0, 1)
        it = iter(ds)
        items = [next(it) for _ in range(6)]  # two epochs
        assert sum(x is None for x in items) == 2 and ds.num_failed == 2
        good = [x for x in items if x is not None]
        assert all(x["input"].shape == (128, 32) and torch.isfinite(x["input"]).all() for x in good)
        if mode == "finetune":  # mixup with the previous clip: soft labels
            assert any(0 < float(x["label"].max()) < 1 or float(x["label"].sum()) > 1 for x in good[1:])


def test_prepare_audio_emits_shards(tmp_path, prepare_audio):
    raw = tmp_path / "in"
    for c in ("dog", "cat"):
        os.makedirs(raw / c)
        for k in range(2):
            sf.write(str(raw / c / f"{k}.wav"), 0.1 * np.ones(8000 + 100 * k), 22050, subtype="PCM_16")
    prepare_audio.main(
        [
            "folder",
            "--input",
            str(raw),
            "--output",
            str(tmp_path / "out"),
            "--labels-from-subdirs",
            "--workers",
            "1",
            "--shards",
            str(tmp_path / "shards"),
            "--shard-size",
            "3",
        ]
    )
    index = json.load(open(tmp_path / "shards" / "train" / "index.json"))
    assert index["decoder"] == "audio" and index["num_samples"] == 4 and len(index["shards"]) == 2
    assert index["meta"]["num_classes"] == 2


def test_fbank_on_device_items_match_the_clip_dataset(tmp_path):
    cfg0 = get_cfg()
    if "FBANK_ON_DEVICE" not in cfg0.DATASETS.AUDIO:
        pytest.skip("DATASETS.AUDIO.FBANK_ON_DEVICE is not available")
    root = _clips(tmp_path / "raw")
    index = write_shards_cli(
        [
            "--manifest",
            str(root / "train.json"),
            "--label-csv",
            str(root / "labels.csv"),
            "--out",
            str(tmp_path / "s"),
            "--num-workers",
            "1",
        ]
    )
    cfg = _cfg(root, **{"DATASETS.SHARDS.TRAIN_INDEX": index, "DATASETS.AUDIO.FBANK_ON_DEVICE": "True"})
    files = build_dataset(cfg, "audioset_manifest", "train", "eval")
    shards = build_dataset(cfg, "shards", "train", "eval")
    assert shards.device_transform is not None
    for i, item in enumerate(shards):
        ref = files[i]
        assert torch.equal(item["input"], ref["input"]) and int(item["num_samples"]) == int(ref["num_samples"])
    batch = shards.device_transform({"input": item["input"][None], "num_samples": item["num_samples"][None]})
    assert batch["input"].shape[1:] == (128, 32)


def test_mixup_partner_survives_a_resume(tmp_path):
    """Finetune shards with waveform mixup mix each clip with the previous sample of the stream;
    a stream resumed mid-epoch, at an epoch boundary or right after an unreadable clip gives
    exactly the items of the uninterrupted stream (the decoder is primed with that sample)."""
    from bridle.data.shards import ShardSink
    from bridle_audio.shards import encode_audio_file

    root = _clips(tmp_path / "raw")
    sink = ShardSink(str(tmp_path / "s"), decoder="audio", meta={"num_classes": 5, "multi_label": True})
    for i, name in enumerate(["a.wav", "b.wav", "c.flac", "d.wav", "e.wav"]):
        ext, data = encode_audio_file(str(root / "audio" / name))
        if i == 2:
            data = data[:40] + b"\0" * 200  # corrupt FLAC
        sink.write({ext: data, "json": json.dumps({"index": i, "labels": [i]}).encode()})
    cfg = _cfg(root, **{"DATASETS.SHARDS.TRAIN_INDEX": sink.close(), "INPUT.AUDIO.MIXUP_PROB": "1.0"})

    def stream(consumed, n):
        ds = build_dataset(cfg, "shards", "train", "finetune")
        ds.set_start(consumed, 1)
        it = iter(ds)
        return [next(it) for _ in range(n)]

    full = stream(0, 13)  # 2.6 epochs of 5 samples
    assert sum(x is None for x in full) == 3
    mixed = [x for x in full[1:] if x is not None and float(x["label"].max()) < 1]
    assert len(mixed) >= 5  # soft labels: mixed with a readable partner
    after_bad = next(k for k in range(1, 13) if full[k - 1] is None)
    for k in sorted({2, 5, 7, after_bad}):  # mid-epoch, epoch boundary, a second epoch, after the bad clip
        resumed = stream(k, 13 - k)
        for a, b in zip(full[k:], resumed):
            assert (a is None) == (b is None), k
            if a is not None:
                assert torch.equal(a["input"], b["input"]) and torch.equal(a["label"], b["label"]), k
