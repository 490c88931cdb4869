"""The video shard format: the "video_csv" SHARD_SOURCE writes it (``tools/make_shards.py
--video-csv``: the files of a Kinetics-style CSV as bytes + JSON label) and the "video"
SAMPLE_DECODER reads one sample (the video file's bytes + JSON label) back as the item
``kinetics_csv`` gives for the file: decord (from memory) -> clip sampling -> the mode's
``ClipTransform``. Sample fields (``tools/make_shards.py --video-csv``): ``mp4`` / ``avi`` /
``mkv`` / ``webm`` / ``mov`` / ``m4v`` and ``json`` = ``{"label": int, "index": int}``.

One view per sample: a random clip in the training modes (the first of REPEATED_AUG views in
"finetune"), the middle clip with a center crop in "eval". The multi-view test (TEST_NUM_SEGMENTS
x TEST_NUM_CROPS views per video) needs random access: evaluate with ``kinetics_csv``.
``video_index`` / ``view_group`` are the sample's index, so evaluators group views per video.
"""

import io
import os
from typing import Dict, List, Optional, Tuple

import torch

from bridle.data.robust import check_mode
from bridle.data.shards import Job, ShardSource, file_fields, sample_payload
from bridle.registry import SAMPLE_DECODER, SHARD_SOURCE

from .clip_dataset import build_clip_dataset

#: Field names (file extensions) of the video in a sample, in the order they are looked for.
VIDEO_FIELDS = ("mp4", "avi", "mkv", "webm", "mov", "m4v")


class VideoSampleDecoder:
    def __init__(self, cfg, mode: str, meta: dict) -> None:
        check_mode(mode, "SAMPLE_DECODER 'video'")
        self.num_classes = int(meta.get("num_classes", 0) or 0) or None
        # A one-video ClipDataset whose "path" is the sample's bytes: the same sampling,
        # decoding and transform code as the file datasets (split "val": one view in eval).
        self.clips = build_clip_dataset(cfg, "val", mode, [None], [0], "shards:video", self.num_classes)

    def __call__(self, sample: Dict[str, bytes]) -> Optional[dict]:
        key, ext, meta = sample_payload(sample, VIDEO_FIELDS, "video")
        self.clips.paths[0] = io.BytesIO(sample[ext])
        self.clips._last_clip = None
        has_label = "label" in meta
        self.clips.labels = torch.tensor([int(meta["label"])]) if has_label else None
        try:
            item = self.clips[0]
        finally:
            self.clips.paths[0] = None
        if item is None:
            raise ValueError(f"sample {key}: cannot decode video ({self.clips.last_failure or 'unreadable'})")
        index = torch.tensor(int(meta.get("index", -1)), dtype=torch.long)
        item["video_index"] = item["view_group"] = index
        return item


@SAMPLE_DECODER.register(name="video")
def build_video_decoder(cfg, mode: str, meta: dict) -> VideoSampleDecoder:
    return VideoSampleDecoder(cfg, mode, meta)


# ----------------------------------------------------------------------------- writing
def video_csv_jobs(csv_path: str, root: str = "") -> Tuple[List[Job], dict]:
    """Jobs and index meta of a Kinetics-style ``path label`` CSV (relative paths against ``root``)."""
    from .kinetics import read_video_csv

    paths, labels = read_video_csv(csv_path, root)
    jobs = [(i, p, {"label": int(y)}) for i, (p, y) in enumerate(zip(paths, labels))]
    return jobs, {"num_classes": max(labels) + 1, "source": os.path.abspath(csv_path)}


def encode_video_job(job: Job) -> Dict[str, bytes]:
    """The sample fields of one video job: the file's own bytes (decoded only when read)."""
    index, path, labels = job
    with open(path, "rb") as f:
        data = f.read()
    return file_fields(index, os.path.splitext(path)[1].lower().lstrip("."), data, labels)


@SHARD_SOURCE.register(name="video_csv")
class VideoCsvSource(ShardSource):
    flag = "--video-csv"
    help = "Kinetics-style 'path label' CSV"
    doc = (
        '  --video-csv K.csv [--root R]    Kinetics-style "path label" CSV: the video files\' bytes;\n'
        '        decoder "video"'
    )

    def jobs(self, args):
        jobs, meta = video_csv_jobs(args.video_csv, args.root)
        return jobs, meta, "video"

    def encoder(self, args):
        return encode_video_job
