"""The audio plugin's benchmark components (tools/benchmark.py --component NAME): Kaldi fbank on
the CPU, the batched device fbank, a loader worker's decode + resample + fbank, and the "audio"
pipeline of the core "loader" component (AudioSet-like clips vs FLAC shards). Imported by
bridle.benchmark.load_components."""

import argparse
import json
import os
from typing import List

import torch

from bridle.benchmark import LoaderCase, Row, component, time_fn
from bridle.benchmark.loader import LOADER_PIPELINE
from bridle.data.shards import write_shards_cli


@component("fbank")
def bench_fbank(args: argparse.Namespace) -> List[Row]:
    """Kaldi fbank (128 mel bins, 25/10 ms) of 10-s 16 kHz clips, clips/s on this process."""
    from torchaudio.compliance import kaldi

    wave = torch.randn(1, 160000)

    def run():
        kaldi.fbank(
            wave - wave.mean(),
            htk_compat=True,
            sample_frequency=16000,
            use_energy=False,
            window_type="hanning",
            num_mel_bins=128,
            dither=0.0,
            frame_shift=10,
        )

    sec = time_fn(run, torch.device("cpu"), args.iters, args.warmup)
    return [
        {
            "component": "fbank",
            "name": "10 s clip",
            "ms": round(sec * 1e3, 2),
            "clips_per_s": round(1 / sec, 1),
            "threads": torch.get_num_threads(),
        }
    ]


@component("device_fbank")
def bench_device_fbank(args: argparse.Namespace) -> List[Row]:
    """Batched Kaldi-compatible fbank + pad/crop + normalisation (audio_device_fbank) of
    ``--batch-size`` 10-s 16 kHz clips on ``--device``: clips/s."""
    from bridle.config import get_cfg

    from .device_fbank import DeviceFbank

    device = torch.device(args.device)
    cfg = get_cfg()
    transform = DeviceFbank(cfg, "pretrain")
    n = int(getattr(args, "batch_size", 32) or 32)
    waves = torch.randn(n, 160000, device=device) * 0.1
    lengths = torch.full((n,), 160000, device=device)

    def run():
        transform({"input": waves, "num_samples": lengths})

    sec = time_fn(run, device, args.iters, args.warmup)
    return [
        {
            "component": "device_fbank",
            "name": f"{n} x 10 s clips",
            "ms": round(sec * 1e3, 2),
            "clips_per_s": round(n / sec, 1),
            "threads": torch.get_num_threads(),
            "device": str(device),
        }
    ]


@component("audio_decode_fbank")
def bench_audio_decode_fbank(args: argparse.Namespace) -> List[Row]:
    """What a loader worker does per clip on the CPU: decode a 10-s wav (soundfile), resample
    (44.1 -> 16 kHz and 16 kHz as is) and fbank (CPU path) vs decode + resample only (the
    FBANK_ON_DEVICE path): clips/s on this process."""
    import tempfile

    import numpy as np
    import soundfile as sf

    from .features import FbankParams, compute_fbank, load_waveform

    params = FbankParams()
    rows: List[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rate in (16000, 44100):
            path = os.path.join(tmp, f"clip_{rate}.wav")
            rng = np.random.default_rng(0)
            sf.write(path, (rng.standard_normal(rate * 10) * 0.1).astype(np.float32), rate, subtype="PCM_16")
            for what, fn in (
                ("decode+resample+fbank", lambda: compute_fbank(load_waveform(path, 16000), params)),
                ("decode+resample", lambda: load_waveform(path, 16000)),
            ):
                sec = time_fn(fn, torch.device("cpu"), args.iters, args.warmup)
                rows.append(
                    {
                        "component": "audio_decode_fbank",
                        "name": f"10 s wav @ {rate} Hz: {what}",
                        "ms": round(sec * 1e3, 2),
                        "clips_per_s": round(1 / sec, 1),
                        "threads": torch.get_num_threads(),
                    }
                )
    return rows


@LOADER_PIPELINE.register(name="audio")
def loader_pipeline(root: str, n: int) -> LoaderCase:
    """``n`` AudioSet-like clips (10 s, 16 kHz PCM_16 wav) in one-file-per-sample layout
    ("audioset_manifest"), and the same as FLAC shards and as shards keeping the wav bytes."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, "audio"), exist_ok=True)
    t = np.arange(160000) / 16000.0
    entries = []
    for i in range(n):  # tones + noise: compresses like real audio, unlike white noise
        x = 0.2 * np.sin(2 * np.pi * (200 + 37 * i) * t * (1 + 0.1 * np.sin(t))) + 0.02 * rng.standard_normal(t.size)
        sf.write(os.path.join(root, "audio", f"{i:05d}.wav"), x.astype(np.float32), 16000, subtype="PCM_16")
        entries.append({"wav": f"audio/{i:05d}.wav", "labels": "/m/x"})
    with open(os.path.join(root, "train.json"), "w") as f:
        json.dump({"data": entries}, f)
    with open(os.path.join(root, "labels.csv"), "w") as f:
        f.write("index,mid,display_name\n0,/m/x,X\n")
    for fmt, sub in (("keep", "shards_wav"), ("flac", "shards")):
        index = write_shards_cli(
            [
                "--manifest",
                os.path.join(root, "train.json"),
                "--label-csv",
                os.path.join(root, "labels.csv"),
                "--out",
                os.path.join(root, sub),
                "--num-workers",
                "1",
                "--shard-size",
                str(max(1, n // 4)),
                "--audio-format",
                fmt,
            ]
        )
    return LoaderCase(
        recipe="configs/audio/pretrain_rq.yaml",
        index=index,
        files_dataset="audioset_manifest",
        opts=[
            "DATASETS.AUDIO.TRAIN_MANIFEST",
            os.path.join(root, "train.json"),
            "DATASETS.AUDIO.LABEL_CSV",
            os.path.join(root, "labels.csv"),
        ],
        layouts=[("shards (FLAC)", "shards"), ("shards (wav bytes kept)", "shards_wav")],
        file_exts=(".wav",),
    )
