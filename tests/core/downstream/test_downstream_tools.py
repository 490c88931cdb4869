"""The library side of tools/export_encoder.py, tools/extract_features.py and
tools/cross_validate.py (bridle.checkpoint.export_encoder, bridle.evaluation.features,
bridle.evaluation.cross_validate)."""

import json
import os

import numpy as np
import pytest
import torch

from bridle.checkpoint import export_encoder, load_encoder
from bridle.config import get_cfg
from bridle.evaluation import cross_validate
from bridle.evaluation import features as extract_features
from downstream_toy import cli_opts
from test_downstream_checkpoint import make_pretrain_checkpoint


def test_export_tool_and_feature_extraction(make_cfg, tmp_path):
    cfg = make_cfg(sub="pretrain")
    src = tmp_path / "pretrain.pth"
    make_pretrain_checkpoint(cfg, src)
    dst, timm_dst = tmp_path / "enc.pth", tmp_path / "enc_timm.pth"
    meta = export_encoder(str(src), str(dst), timm_path=str(timm_dst))
    assert meta["grid_size"] == [4, 4] and os.path.isfile(timm_dst)

    out = tmp_path / "feats" / "test.npy"
    # "toy_broken": every 5th item is unreadable -> 38 of 48 items, indices saved
    written = extract_features.main(
        [
            "--weights",
            str(dst),
            "--split",
            "test",
            "--out",
            str(out),
            "DATASETS.TEST",
            "toy_broken",
            "TEST.BATCH_SIZE_PER_GPU",
            "16",
        ]
    )
    feats = np.load(written["features"])
    labels = np.load(written["labels"])
    index = np.load(written["index"])
    assert feats.shape == (38, 64) and feats.dtype == np.float32
    assert labels.shape == (38,) and list(index[:3]) == [1, 2, 3]
    enc = load_encoder(dst)
    from downstream_toy import ToyDataset

    ds = ToyDataset(cfg, "test", "eval")
    with torch.no_grad():
        tokens = enc(torch.stack([ds[i]["input"] for i in index[:4]]))
    assert np.allclose(feats[:4], tokens[:, 1:].mean(1).numpy(), atol=1e-5)
    assert list(labels[:4]) == [int(ds[i]["label"]) for i in index[:4]]

    cls_out = tmp_path / "cls.npy"
    extract_features.main(["--weights", str(dst), "--out", str(cls_out), "--cls", "DATASETS.TEST", "toy_clusters"])
    cls_feats = np.load(cls_out)
    assert cls_feats.shape == (48, 64) and not os.path.exists(tmp_path / "cls_index.npy")
    with torch.no_grad():
        assert np.allclose(cls_feats[:2], enc(torch.stack([ds[0]["input"], ds[1]["input"]]))[:, 0].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="DATASETS.BOGUS"):
        extract_features.main(["--weights", str(dst), "--split", "bogus", "--out", str(cls_out)])


def test_fold_values_follow_the_key_type():
    cfg = get_cfg(load_plugins=False)
    assert cross_validate.fold_value(cfg, "SEED", "3") == "3"
    assert cross_validate.fold_value(cfg, "DATASETS.TEST", 2) == "'2'"
    with pytest.raises(ValueError, match="SEED"):
        cross_validate.fold_value(cfg, "SEED", "a")
    with pytest.raises(KeyError, match="NOPE"):
        cross_validate.fold_value(cfg, "DATASETS.NOPE", 1)
    folds, opts = cross_validate.split_folds_and_opts(["1", "2", "SOLVER.BASE_LR", "0.1"], ["SEED", "4"], cfg)
    assert folds == ["1", "2"] and opts == ["SOLVER.BASE_LR", "0.1", "SEED", "4"]
    assert cross_validate.summarize({"1": 0.5, "2": 0.7}) == pytest.approx((0.6, 0.1))


def test_cross_validation_on_two_folds(tmp_path):
    root = tmp_path / "cv"
    opts = cli_opts(root, "SOLVER.MAX_ITER", 12, "TEST.EVALUATORS", "['accuracy', 'map']")
    summary = cross_validate.main(
        ["--fold-key", "DATASETS.TEST", "--folds", "toy_clusters_fold1", "toy_clusters_fold2", *opts]
    )
    values = {}
    for fold in ("toy_clusters_fold1", "toy_clusters_fold2"):
        run_dir = root / f"fold_{fold}"
        with open(run_dir / "final_results.json") as f:
            values[fold] = json.load(f)["last"]["test"]["top1"]
        assert f"TEST: {fold}" in (run_dir / "config.yaml").read_text()
        assert (run_dir / "model_final.pth").is_file()
    mean = sum(values.values()) / 2
    std = abs(values["toy_clusters_fold1"] - values["toy_clusters_fold2"]) / 2
    assert summary["metric"] == "top1" and summary["folds"] == values
    assert summary["mean"] == pytest.approx(mean) and summary["std"] == pytest.approx(std)
    with open(root / "cv_results.json") as f:
        assert json.load(f) == summary
    # --resume: finished folds are read back, not retrained; another metric can be summarised
    again = cross_validate.main(
        [
            "--fold-key",
            "DATASETS.TEST",
            "--folds",
            "toy_clusters_fold1",
            "toy_clusters_fold2",
            "--resume",
            "--metric",
            "mAP",
            *opts,
        ]
    )
    assert again["metric"] == "mAP" and set(again["folds"]) == set(values)
