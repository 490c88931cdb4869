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
