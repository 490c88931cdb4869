"""tools/tokenize_dataset.py helpers: a code dtype wide enough for the codebook, whole-dataset
usage per level; an unlabelled audio manifest can be read in eval mode."""

import json

import numpy as np
import pytest

from bridle.evaluation import tokenize_dataset


def test_code_dtype_holds_every_code_id():
    assert tokenize_dataset.code_dtype(256) == np.int16
    assert tokenize_dataset.code_dtype(32768) == np.int16  # ids 0..32767
    assert tokenize_dataset.code_dtype(32769) == np.int32
    ids = np.arange(64000)
    assert (ids.astype(tokenize_dataset.code_dtype(64000)) == ids).all()  # int16 overflowed here


def test_usage_per_level():
    counts = np.array([[2, 2, 0, 0], [1, 1, 1, 1]], dtype=np.float64)
    u = tokenize_dataset.usage_per_level(counts)
    assert [x["used"] for x in u] == [2, 4]
    assert [x["cur"] for x in u] == [0.5, 1.0]
    assert u[0]["perplexity"] == pytest.approx(2.0) and u[1]["perplexity"] == pytest.approx(4.0)


def test_unlabelled_manifest_is_readable_in_eval_mode(tmp_path):
    pytest.importorskip("bridle_audio")
    from bridle.config import get_cfg
    from bridle.data.build import build_dataset
    from bridle.plugins import load_plugins

    load_plugins(["bridle_audio"])
    manifest = tmp_path / "unlabelled.json"
    manifest.write_text(json.dumps({"data": [{"wav": "a.wav"}, {"wav": "b.wav"}]}))
    cfg = get_cfg()
    cfg.DATASETS.AUDIO.TRAIN_MANIFEST = str(manifest)
    ds = build_dataset(cfg, "audioset_manifest", "train", "eval")
    assert len(ds) == 2 and not ds.has_labels
    with pytest.raises(ValueError, match="needs labels"):
        build_dataset(cfg, "audioset_manifest", "train", "finetune")


@pytest.fixture(scope="module")
def digits_tokenizer(tmp_path_factory):
    """A tiny image checkpoint with a trained-tokenizer and its exported folder."""
    pytest.importorskip("bridle_image")
    from bridle.interop.hub import export_folder
    from export_helpers import IMAGE, pretrain_checkpoint, tiny_cfg

    d = tmp_path_factory.mktemp("tok")
    cfg = tiny_cfg(IMAGE, "DATASETS.TEST", "digits", "DATASETS.IMAGE.DIGITS_TEST_FRACTION", 0.04)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.MODEL.DEVICE = "cpu"
    pretrain_checkpoint(cfg, d / "model_final.pth", tokenizer=True)
    export_folder(d / "model_final.pth", d / "tokenizer", kind="tokenizer")
    return d


def _usage_of(codes, size):
    return [int((np.bincount(codes[..., lv].ravel(), minlength=size) > 0).sum()) for lv in range(codes.shape[-1])]


def test_tokenize_dataset_npz_npy_shards_and_stats(digits_tokenizer, tmp_path, capsys):
    import io
    import tarfile

    import bridle

    d = digits_tokenizer
    opts = ["--split", "test", "DATALOADER.NUM_WORKERS", "0"]
    npz = tokenize_dataset.main(["--weights", str(d / "model_final.pth"), "--output", str(tmp_path / "c.npz")] + opts)
    z = np.load(npz)
    codes = z["codes"]
    assert codes.shape == (72, 16, 2) and codes.dtype == np.int16 and z["labels"].shape == (72,)
    assert list(z["used"]) == _usage_of(codes, 16)
    assert "level 1: CUR" in capsys.readouterr().out
    # the folder gives the same codes; npy layout with usage.json
    out = tokenize_dataset.main(["--weights", str(d / "tokenizer"), "--output", str(tmp_path / "npy")] + opts)
    assert np.array_equal(np.load(f"{out}/codes.npy", mmap_mode="r"), codes)
    assert np.array_equal(np.load(f"{out}/index.npy"), z["index"])
    usage = json.loads(open(f"{out}/usage.json").read())
    assert usage["items"] == 72 and [u["used"] for u in usage["per_level"]] == _usage_of(codes, 16)
    p = np.bincount(codes[..., 0].ravel(), minlength=16) / codes[..., 0].size
    p = p[p > 0]
    assert usage["per_level"][0]["perplexity"] == pytest.approx(float(np.exp(-(p * np.log(p)).sum())))
    # shards: one sample per item, codes.npy + json {index, label}
    sh = tokenize_dataset.main(
        ["--weights", str(d / "tokenizer"), "--output", str(tmp_path / "sh"), "--format", "shards"] + opts
    )
    index = json.loads(open(f"{sh}/index.json").read())
    assert index["num_samples"] == 72 and index["decoder"] == "tensors" and index["meta"]["grid_size"] == [4, 4]
    with tarfile.open(f"{sh}/{index['shards'][0]['name']}") as tar:
        member = sorted(n for n in tar.getnames() if n.endswith("codes.npy"))[0]
        first = np.load(io.BytesIO(tar.extractfile(member).read()))
    assert np.array_equal(first, codes[0])
    # = bridle.load_tokenizer on the dataset's eval input of the first item
    from bridle.data.build import build_dataset

    tok = bridle.load_tokenizer(str(d / "tokenizer"))
    item = build_dataset(tok.cfg, "digits", "test", "eval")[int(z["index"][0])]
    assert np.array_equal(tok.encode_model_input(item["input"][None])[0].numpy(), codes[0])
