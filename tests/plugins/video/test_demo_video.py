import json
import os
import subprocess
import sys

import decord
import numpy as np
import pytest

from bridle.demo import driver as demo_lib
from bridle_video import moving_digits

REPO = demo_lib.REPO


def test_every_frame_position_is_direction_free_and_the_canvas_wraps():
    """The digit's position in any frame has the same (uniform) distribution for every
    direction, so one frame says nothing about the motion; the rendering wraps around."""
    image = np.zeros((4, 4), np.float32)
    image[0, 0] = 1.0
    frames = moving_digits.render(image, 8, np.array([[6.0, 7.0], [7.5, 0.0]]))
    assert frames[0, 7, 6] == 255 and frames[0].sum() == 255  # integer position: one pixel
    assert frames[1, 0, 7] == 128 and frames[1, 0, 0] == 128  # half a pixel past the right edge: wrapped
    assert np.allclose(moving_digits.velocity(2, 1.5), [0.0, -1.5])  # "up" is -y in the image
    jobs = moving_digits.make_clips(np.zeros(2000, int), range(2000), "pool", 1, 0, 32, 16)
    first = np.array([p[0] for _, p in jobs]) % 32  # the first frame: the farthest from the middle
    directions = np.array([c.direction for c, _ in jobs])
    assert np.bincount(directions).tolist() == [250] * 8  # balanced
    for d in range(8):  # mean position ~ canvas centre for every direction
        assert np.abs(first[directions == d].mean(0) - 16.0).max() < 2.0


def test_clips_are_the_same_bytes_every_time(tmp_path):
    """The demo is deterministic only if its data are: the same frames give the same file."""
    digits = moving_digits.upsampled_digits(16)
    jobs = moving_digits.make_clips(np.arange(1797) % 10, range(12), "pool", 1, 1, 32, 16)
    for n in range(2):
        for k, (clip, positions) in enumerate(jobs):
            moving_digits.write_mp4(str(tmp_path / f"{n}_{k}.mp4"), moving_digits.render(digits[k], 32, positions))
    for k in range(len(jobs)):
        assert (tmp_path / f"0_{k}.mp4").read_bytes() == (tmp_path / f"1_{k}.mp4").read_bytes()


def test_backdrops_and_speed_range():
    """The clutter the digit can move over: seeded, in [0, level], one texture for every frame
    ("static") or a new one per frame ("flicker"); the digit stays on top (the brighter wins);
    speeds are drawn from the given range."""
    static = moving_digits.backdrop("static", 0.5, 4, 32, seed=3)
    assert static.shape == (4, 32, 32) and static.min() == 0.0 and abs(static.max() - 0.5) < 1e-6
    assert all(np.array_equal(static[0], static[t]) for t in range(4))
    assert np.array_equal(static, moving_digits.backdrop("static", 0.5, 4, 32, seed=3))
    assert not np.array_equal(static, moving_digits.backdrop("static", 0.5, 4, 32, seed=4))
    flicker = moving_digits.backdrop("flicker", 0.3, 4, 32, seed=3)
    assert not np.array_equal(flicker[0], flicker[1]) and flicker.max() <= 0.3 + 1e-6
    assert not moving_digits.backdrop("none", 0.5, 2, 8, seed=0).any()
    with pytest.raises(ValueError, match="background 'snow'"):
        moving_digits.backdrop("snow", 0.5, 2, 8, seed=0)
    image = np.ones((4, 4), np.float32)
    frames = moving_digits.render(image, 32, np.array([[0.0, 0.0]] * 4), static)
    assert (frames[:, :4, :4] == 255).all()  # the digit over the clutter
    assert np.array_equal(frames[:, 10:, 10:], np.round(static[:, 10:, 10:] * 255).astype(np.uint8))
    jobs = moving_digits.make_clips(np.zeros(200, int), range(200), "pool", 1, 0, 32, 16, speed=(3.0, 4.0))
    assert all(3.0 <= c.speed <= 4.0 for c, _ in jobs)


@pytest.mark.slow
def test_video_demo_end_to_end_tiny(tmp_path):
    """`make demo-video` on a few clips with a tiny model and a few iterations: real mp4s that decord
    reads, val/test digit images disjoint from the pool, and every report key for both label sets."""
    pytest.importorskip("sklearn")
    out = str(tmp_path / "demo")
    tiny = ["MODEL.ENCODER.EMBED_DIM", "64", "MODEL.ENCODER.DEPTH", "1", "MODEL.ENCODER.NUM_HEADS", "2"]
    common = ["SOLVER.WARMUP_ITERS", "1", "DATALOADER.NUM_WORKERS", "0", "PROGRESS_BAR", "False"]
    phases = [f"PRETRAIN.PHASES.{p}.MAX_ITER" for p in ("ENCODER_COLD", "TOKENIZER", "ENCODER")]
    subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "demo_video.py"), "--output-dir", out]
        + ["--max-images", "240", "--pool-clips-per-image", "1", "--labelled-per-pair", "1"]
        + ["--pretrain-opts", *tiny, *common, "SOLVER.BATCH_SIZE_PER_GPU", "8"]
        + [x for p in phases for x in (p, "2")]
        + ["--downstream-opts", *tiny, *common, "SOLVER.MAX_ITER", "2", "TEST.EVAL_PERIOD", "1"],
        check=True,
        cwd=REPO,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        stdout=subprocess.DEVNULL,
    )
    data = os.path.join(out, "data")
    clips = moving_digits.read_manifest(os.path.join(data, "clips.csv"))
    images = {s: {c.image_index for c in clips if c.split == s} for s in ("pool", "val", "test")}
    assert images["pool"] and images["val"] and images["test"]
    assert not images["pool"] & images["val"] and not images["pool"] & images["test"]
    assert not images["val"] & images["test"]
    assert all(c.split == "pool" for c in clips if c.labelled)  # the labelled clips are pool clips
    for c in clips[:3] + clips[-3:]:  # real H.264 files that decord decodes
        frames = decord.VideoReader(os.path.join(data, c.path)).get_batch(list(range(16))).asnumpy()
        assert frames.shape == (16, 32, 32, 3) and frames.max() > 100
    for label in ("digit", "direction"):
        with open(os.path.join(data, f"{label}_test.csv")) as f:
            rows = [line.split() for line in f]
        want = [(c.path, str(getattr(c, label))) for c in clips if c.split == "test"]
        assert [tuple(r) for r in rows] == want

    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    assert report["demo"] == "video" and report["schedule"] == ["encoder_cold", "tokenizer", "encoder"]
    assert list(report["tasks"]) == ["motion", "appearance"]
    assert report["results"] == report["tasks"]["motion"]["results"]
    for name, task in report["tasks"].items():
        for proto in ("linear_probe", "finetune"):
            assert sorted(task["results"][proto]) == ["bridle", "bridle_iter1", "random_init"]
            for r in task["results"][proto].values():
                assert 0.0 <= r["test_top1"] <= 1.0 and r["selected_iteration"] in (1, 2)
        for key in ("baseline", "baseline_middle_frame"):
            assert 0.0 <= task[key]["test_top1"] <= 1.0
        assert task["baseline"]["num_features"] == 3 * 8 * 32 * 32
        assert task["baseline_middle_frame"]["num_features"] == 3 * 32 * 32
    assert report["notes"]["pool_items"] == len(images["pool"]) == report["tokenizer_usage"]["items"]
    assert report["notes"]["test_items"] == len(images["test"])
    for phase in ("0_encoder_cold", "2_encoder"):  # the online probe of the direction, at each phase's end
        with open(os.path.join(out, "pretrain", phase, "metrics.json")) as f:
            rows = [json.loads(line) for line in f]
        probe = [r for r in rows if "probe/knn_top1" in r]
        assert len(probe) == 1 and 0.0 <= probe[0]["probe/linear_top1"] <= 1.0, rows
    levels = report["tokenizer_usage"]["per_level"]
    assert [x["level"] for x in levels] == [0, 1, 2, 3]
    assert report["tokenizer_usage"]["tokens_per_item"] == 4 * 4 * 4
    assert all(0 < x["usage"] <= 1 for x in levels)


def test_proxy_study_scores_trained_iteration1_and_random_encoders(tmp_path):
    """python -m bridle_video.proxy_study on a few clips, a tiny model and 2 iterations per phase:
    one row with val top-1 in [0, 1] for each encoder and label set, appended to results.jsonl."""
    pytest.importorskip("sklearn")
    out = str(tmp_path / "proxy")
    tiny = ["MODEL.ENCODER.EMBED_DIM", "64", "MODEL.ENCODER.DEPTH", "1", "MODEL.ENCODER.NUM_HEADS", "2"]
    tiny += ["SOLVER.WARMUP_ITERS", "1", "SOLVER.BATCH_SIZE_PER_GPU", "8", "PRETRAIN.PHASES.TOKENIZER.MAX_ITER", "2"]
    cmd = [sys.executable, "-m", "bridle_video.proxy_study", "tiny", "--out", out, "--max-images", "200"]
    cmd += ["--background", "static", "--schedule", "encoder_cold,tokenizer,encoder", "--iters", "2", "--e2iters", "2"]
    subprocess.run(
        cmd + tiny, check=True, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL
    )
    with open(os.path.join(out, "results.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 1 and rows[0]["name"] == "tiny" and rows[0]["background"] == "static"
    for which in ("trained", "iter1", "random"):
        for label in ("direction", "digit"):
            assert 0.0 <= rows[0][f"{which}_{label}"] <= 1.0
    assert os.path.isfile(os.path.join(out, "tiny", "pretrain", "2_encoder", "model_final.pth"))
