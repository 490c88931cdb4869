"""bridle_audio.stats (tools/compute_audio_stats.py): exact mean/std of the dataset's un-normalised inputs."""

import json
import os

import pytest
import torch

from bridle_audio.dataset import AudioClipDataset


def test_stats_match_the_dataset_inputs(audio_corpus, clean_corpus, compute_audio_stats, cfg_factory, tmp_path, capsys):
    out = tmp_path / "stats.json"
    folder = os.path.join(clean_corpus, "speech")
    stats = compute_audio_stats.main(
        ["--folder", folder, "--target-length", "512", "--workers", "2", "--output", str(out)]
    )
    assert "NORM_MEAN" in capsys.readouterr().out
    assert json.loads(out.read_text()) == stats
    # Reference: the eval-mode items of the dataset, without normalisation (padding included).
    paths = sorted(os.path.join(folder, f) for f in os.listdir(folder))
    cfg = cfg_factory(TARGET_LENGTH=512)
    ds = AudioClipDataset(cfg, paths, "eval", normalize_input=False)
    x = torch.stack([ds[i]["input"] for i in range(len(ds))]).double()
    assert stats["clips"] == len(paths) and stats["failed"] == 0
    assert stats["mean"] == pytest.approx(float(x.mean()), rel=1e-6)
    assert stats["std"] == pytest.approx(float(x.std(unbiased=False)), rel=1e-6)
    real = x[x != 0]  # speech clips are shorter than 512 frames: padding is exactly 0
    assert stats["unpadded_mean"] == pytest.approx(float(real.mean()), rel=1e-5)


def test_stats_skip_unreadable_clips(audio_corpus, compute_audio_stats, tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps([{"wav": p, "labels": ""} for p in audio_corpus.speech[:2] + audio_corpus.corrupt]))
    stats = compute_audio_stats.main(["--manifest", str(manifest), "--workers", "1"])
    assert stats["clips"] == 2 and stats["failed"] == len(audio_corpus.corrupt)
