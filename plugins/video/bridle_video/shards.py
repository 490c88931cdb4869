"""The "video" SAMPLE_DECODER: one WebDataset sample (the video file's bytes + JSON label) -> the
item ``kinetics_csv`` gives for the file: decord (from memory) -> clip sampling -> the mode's
``ClipTransform``. Sample fields (``tools/make_shards.py --video-csv``): ``mp4`` / ``avi`` /
``mkv`` / ``webm`` / ``mov`` / ``m4v`` and ``json`` = ``{"label": int, "index": int}``.

One view per sample: a random clip in the training modes (the first of REPEATED_AUG views in
"finetune"), the middle clip with a center crop in "eval". The multi-view test (TEST_NUM_SEGMENTS
x TEST_NUM_CROPS views per video) needs random access: evaluate with ``kinetics_csv``.
``video_index`` / ``view_group`` are the sample's index, so evaluators group views per video.
"""
import io
from typing import Dict, Optional

import torch

from bridle.data.robust import check_mode
from bridle.data.shards import sample_payload
from bridle.registry import SAMPLE_DECODER

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
