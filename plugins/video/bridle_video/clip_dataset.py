"""Clips decoded with decord, one item per (video, view).

Item layout:
    {"input": float [C, T, H, W], "label": long scalar (labelled datasets only),
     "video_index": long scalar, "view_index": long scalar, "view_group": long scalar}
Dataset index ``i`` is ``video_index * num_views + view_index``; ``len = num_videos * num_views``.
``view_group`` equals ``video_index``: it is the key the core classification evaluators average
the probabilities of a sample's views over (bridle/evaluation/classification.py).

- Split "test" in "eval" mode (multi-view test): ``num_views = TEST_NUM_SEGMENTS *
  TEST_NUM_CROPS``; view ``v`` is temporal segment ``v // TEST_NUM_CROPS`` (evenly spaced clips)
  and spatial crop ``v % TEST_NUM_CROPS``. Average the predictions of the items that share a
  ``video_index`` (= ``view_group``) to get the video's prediction.
- Split "val" (and any other split) in "eval" mode: one view, the middle clip, center crop.
- "finetune" mode: ``num_views = INPUT.VIDEO.REPEATED_AUG``; each view is an independent random
  clip and augmentation of the same video (repeated augmentation).
- "pretrain" / "linear_probe": one random view per video.
- Repeated sampling (``clips_per_decode`` > 1, INPUT.VIDEO.NUM_SAMPLE, training modes): the
  clip's frames are decoded once and augmented ``clips_per_decode`` times; the item is then a
  *list* of that many item dicts, which ``bridle.data.build.skip_none_collate`` flattens into the
  batch (VideoMAE V2).

A file that decord cannot open or decode gives ``None`` (counted in ``num_failed``, warned once).
"""

import os
from typing import List, Optional, Sequence

import decord
import torch
from decord._ffi.base import DECORDError
from torch.utils.data import Dataset

from bridle.data.robust import RobustItemsMixin, check_mode
from bridle.errors import MissingFileError

from .sampling import clip_frame_indices, clip_span, random_clip_start, segment_clip_starts
from .transforms import ClipTransform, clip_input_size


class ClipDataset(RobustItemsMixin, Dataset):
    load_errors = RobustItemsMixin.load_errors + (DECORDError,)

    def __init__(
        self,
        paths: Sequence[str],
        labels: Optional[Sequence[int]],
        transform: ClipTransform,
        num_frames: int,
        sampling_rate: int,
        num_segments: int = 1,
        num_crops: int = 1,
        repeats: int = 1,
        decode_threads: int = 1,
        num_classes: Optional[int] = None,
        clips_per_decode: int = 1,
    ) -> None:
        self.paths: List[str] = list(paths)
        self.labels = None if labels is None else torch.as_tensor(list(labels), dtype=torch.long)
        self.transform = transform
        self.num_frames, self.sampling_rate = num_frames, sampling_rate
        self.random_clips = transform.mode != "eval"
        self.num_segments, self.num_crops = num_segments, num_crops
        self.num_views = repeats if self.random_clips else num_segments * num_crops
        self.decode_threads = decode_threads
        self.clips_per_decode = max(1, int(clips_per_decode)) if self.random_clips else 1
        if num_classes is not None:
            self.num_classes = num_classes
        self._last_clip = None  # (path, segment, frames): the crops of a segment decode once

    @property
    def num_videos(self) -> int:
        return len(self.paths)

    def __len__(self) -> int:
        return self.num_videos * self.num_views

    def __getitem__(self, index: int):
        video_index, view_index = divmod(index, self.num_views)
        segment, crop = divmod(view_index, self.num_crops) if not self.random_clips else (0, 0)
        path = self.paths[video_index]
        frames = self.load_or_none(path, self._frames, path, segment)
        if frames is None:
            return None
        items = [self._item(frames, video_index, view_index, crop) for _ in range(self.clips_per_decode)]
        return items[0] if self.clips_per_decode == 1 else items

    def _item(self, frames: torch.Tensor, video_index: int, view_index: int, crop: int) -> dict:
        video_tensor = torch.tensor(video_index, dtype=torch.long)
        item = {
            "input": self.transform(frames, crop, self.num_crops),
            "video_index": video_tensor,
            "view_index": torch.tensor(view_index, dtype=torch.long),
            "view_group": video_tensor,
        }
        if self.labels is not None:
            item["label"] = self.labels[video_index]
        return item

    def _frames(self, path: str, segment: int) -> torch.Tensor:
        if not self.random_clips and self._last_clip is not None and self._last_clip[:2] == (path, segment):
            return self._last_clip[2]
        frames = self._decode(path, segment)
        if not self.random_clips:
            self._last_clip = (path, segment, frames)
        return frames

    #: Where the paths come from, e.g. "video CSV 'train.csv'": named with the entry of a missing file.
    source: str = ""

    def _decode(self, path: str, segment: int) -> torch.Tensor:
        """uint8 [T, H, W, 3] frames of one clip."""
        if isinstance(path, (str, os.PathLike)) and not os.path.exists(path):  # decord's message does not say so
            where = f" ({self.source}, entry {self.paths.index(path)})" if self.source else ""
            raise MissingFileError(f"Video file '{path}' does not exist{where}.")
        reader = decord.VideoReader(path, num_threads=self.decode_threads, ctx=decord.cpu(0))
        length = len(reader)
        if length == 0:
            raise ValueError(f"video '{path}' has no frames")
        span = clip_span(self.num_frames, self.sampling_rate)
        if self.random_clips:
            start = random_clip_start(length, span)
        else:
            start = segment_clip_starts(length, span, self.num_segments)[segment]
        batch = reader.get_batch(clip_frame_indices(length, self.num_frames, self.sampling_rate, start))
        return batch if isinstance(batch, torch.Tensor) else torch.from_numpy(batch.asnumpy())


def build_clip_dataset(
    cfg, split: str, mode: str, paths, labels, entry: str, num_classes: Optional[int] = None
) -> ClipDataset:
    """A ClipDataset with the sampling, views and transform that ``cfg``, ``split`` and ``mode`` ask for."""
    check_mode(mode, f"DATASET '{entry}'")
    v = cfg.INPUT.VIDEO
    num_frames = clip_input_size(cfg)[0]
    for key in ("SAMPLING_RATE", "TEST_NUM_SEGMENTS", "TEST_NUM_CROPS", "REPEATED_AUG", "DECODE_THREADS", "NUM_SAMPLE"):
        if int(v[key]) < 1:
            raise ValueError(f"INPUT.VIDEO.{key} must be >= 1; got {v[key]}.")
    multi_view = mode == "eval" and split == "test"
    return ClipDataset(
        paths,
        labels,
        ClipTransform(cfg, mode),
        num_frames=num_frames,
        sampling_rate=int(v.SAMPLING_RATE),
        num_segments=int(v.TEST_NUM_SEGMENTS) if multi_view else 1,
        num_crops=int(v.TEST_NUM_CROPS) if multi_view else 1,
        repeats=int(v.REPEATED_AUG) if mode == "finetune" else 1,
        decode_threads=int(v.DECODE_THREADS),
        num_classes=num_classes,
        clips_per_decode=int(v.NUM_SAMPLE) if mode != "eval" else 1,
    )
