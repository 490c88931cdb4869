"""The "spectrogram" input adapter (bridle.load_tokenizer and exported models' raw-audio path)
computes a long clip's fbank in chunks of CHUNK_FRAMES frames: the same values as at once, and
memory beyond the input and the fbank that does not grow with the clip's length."""

import json
import os
import subprocess
import sys

import pytest
import torch

import bridle_audio.adapter as adapter_mod
from bridle.config import get_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CONFIG = os.path.join(REPO, "configs", "audio", "tiny_pretrain.yaml")


def _adapter():
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    return adapter_mod.AudioAdapter(cfg)


@pytest.mark.parametrize("frames", [1000, 1001, 2999, 3000])  # a chunk boundary, one frame past it
def test_chunked_fbank_equals_the_whole_clip(monkeypatch, frames):
    ad = _adapter()
    p = ad.params
    g = torch.Generator().manual_seed(frames)
    x = 0.1 * torch.randn(2, p.samples_for_frames(frames) + 37, generator=g) + 0.05  # a DC offset to remove
    monkeypatch.setattr(adapter_mod, "CHUNK_FRAMES", 10**9)
    whole, n_whole = ad(x)
    monkeypatch.setattr(adapter_mod, "CHUNK_FRAMES", 1000)
    chunked, n_chunked = ad(x)
    assert whole.shape == chunked.shape == (2, frames, p.num_mel_bins)
    assert torch.equal(n_whole, n_chunked) and n_whole.tolist() == [frames, frames]
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)


_PROBE = """
import json, sys, torch
from bridle.config import get_cfg
import bridle_audio.adapter as A


def status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


config, seconds, chunk = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
A.CHUNK_FRAMES = chunk
cfg = get_cfg()
cfg.merge_from_file(config)
ad = A.AudioAdapter(cfg)
audio = torch.empty(1, int(seconds * 16000)).uniform_(-0.5, 0.5)
ad(torch.empty(1, 3 * 16000).uniform_(-0.5, 0.5))  # warm-up
with open("/proc/self/clear_refs", "w") as f:  # peak RSS (VmHWM) := current RSS
    f.write("5")
before = status_kib("VmRSS")
fb, _ = ad(audio)
print(json.dumps({"peak_kib": status_kib("VmHWM") - before, "output_kib": fb.numel() * 4 // 1024}))
"""


def _peak(seconds, chunk):
    # a fixed mmap threshold returns freed blocks to the system: the peak follows the live tensors
    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="131072")
    r = subprocess.run(
        [sys.executable, "-c", _PROBE, CONFIG, str(seconds), str(chunk)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_long_clip_fbank_memory_does_not_grow_with_its_length():
    """Peak RSS increase (KiB) while the adapter turns a clip into its fbank, in chunks of 2048
    frames to keep the test short (measured: 4 and 8 min chunked about 22 and 25 MiB, the fbank
    itself 3 and 6 MiB of it; 4 min at once about 209 MiB. With the default 8192 frames: 10 and
    20 min about 83 and 90 MiB, 10 min at once 523 MiB)."""
    four = _peak(240, 2048)
    eight = _peak(480, 2048)
    at_once = _peak(240, 10**9)
    grown = eight["peak_kib"] - four["peak_kib"]
    assert grown <= (eight["output_kib"] - four["output_kib"]) + 8 * 1024, (four, eight)
    assert at_once["peak_kib"] > 4 * four["peak_kib"], (four, at_once)
