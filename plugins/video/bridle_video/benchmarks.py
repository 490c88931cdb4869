"""The video plugin's benchmark component (tools/benchmark.py --component video_clips): clips/s
of one loader worker on a synthetic H.264 video. Imported by bridle.benchmark.load_components."""

import argparse
import os
from typing import List

import torch

from bridle.benchmark import Row, component, time_fn


def _video_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("video_clips")
    g.add_argument("--video-config", default="configs/video/pretrain_rq.yaml", help="video config")
    g.add_argument("--video-seconds", type=float, default=10.0, help="length of the synthetic 25-fps clip")


@component("video_clips", add_args=_video_args)
def bench_video_clips(args: argparse.Namespace) -> List[Row]:
    """Video loader worker: clips/s of the pretraining dataset (decord decode + transform) on a
    synthetic H.264 320x256 25-fps video, for INPUT.VIDEO.NUM_SAMPLE (clips per decode) 1 / 2 / 4
    and DECODE_THREADS 1 / 2, in this process (= one loader worker)."""
    import tempfile

    import av
    import numpy as np

    from bridle.config import get_cfg
    from bridle.registry import DATASET

    rows: List[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "clips"))
        path = os.path.join(tmp, "clips", "synthetic.mp4")
        rng = np.random.default_rng(0)
        base = rng.integers(0, 255, (256 + 64, 320 + 64, 3), dtype=np.uint8)
        with av.open(path, mode="w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.height, stream.width, stream.pix_fmt = 256, 320, "yuv420p"
            for i in range(int(args.video_seconds * 25)):
                frame = base[i % 64 : i % 64 + 256, i % 64 : i % 64 + 320]  # a moving pan
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
            container.mux(stream.encode())
        for threads in (1, 2):
            for per_decode in (1, 2, 4):
                cfg = get_cfg()
                cfg.merge_from_file(args.video_config)
                cfg.DATASETS.VIDEO.FOLDER_ROOT = os.path.join(tmp, "clips")
                cfg.INPUT.VIDEO.NUM_SAMPLE = per_decode
                cfg.INPUT.VIDEO.DECODE_THREADS = threads
                ds = DATASET.get("video_folder")(cfg, "train", "pretrain")
                sec = time_fn(lambda: ds[0], torch.device("cpu"), args.iters, args.warmup)
                rows.append(
                    {
                        "component": "video_clips",
                        "name": f"NUM_SAMPLE {per_decode}, DECODE_THREADS {threads}",
                        "ms": round(sec * 1e3, 1),
                        "clips_per_s": round(per_decode / sec, 1),
                        "threads": torch.get_num_threads(),
                    }
                )
    return rows
