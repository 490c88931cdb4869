"""Where a clip comes from: which frames (temporal sampling) and which box (spatial crops).

Pure functions over sizes; randomness from torch's global generator (seeded per loader worker).
"""

from typing import List, Sequence, Tuple

import torch


def _randint(high: int) -> int:
    """Uniform integer in [0, high)."""
    return int(torch.randint(high, (1,)).item())


def clip_span(num_frames: int, sampling_rate: int) -> int:
    """Source frames covered by a clip of ``num_frames`` taken every ``sampling_rate`` frames."""
    return (num_frames - 1) * sampling_rate + 1


def clip_frame_indices(video_len: int, num_frames: int, sampling_rate: int, start: int) -> List[int]:
    """``num_frames`` indices from ``start`` every ``sampling_rate`` frames; a video shorter than
    the clip repeats its last frame."""
    return [min(start + i * sampling_rate, video_len - 1) for i in range(num_frames)]


def random_clip_start(video_len: int, span: int) -> int:
    return _randint(max(video_len - span, 0) + 1)


def segment_clip_starts(video_len: int, span: int, num_segments: int) -> List[int]:
    """Start frames of ``num_segments`` clips spread evenly over the video (one: the middle)."""
    room = max(video_len - span, 0)
    if num_segments == 1:
        return [room // 2]
    return [round(s * room / (num_segments - 1)) for s in range(num_segments)]


def crop_offsets(length: int, crop: int, num_crops: int) -> List[int]:
    """Offsets of ``num_crops`` crops spread evenly along a side (one: centered)."""
    room = max(length - crop, 0)
    if num_crops == 1:
        return [room // 2]
    return [round(c * room / (num_crops - 1)) for c in range(num_crops)]


# Fixed crop positions of TSN / VideoMAE's GroupMultiScaleCrop (more_fix_crop), as
# (row, column) in quarters of the free room: corners, center, edge centers, quarter points.
_FIXED_POSITIONS = (
    (0, 0),
    (0, 4),
    (4, 0),
    (4, 4),
    (2, 2),
    (2, 0),
    (2, 4),
    (4, 2),
    (0, 2),
    (1, 1),
    (1, 3),
    (3, 1),
    (3, 3),
)


def multiscale_crop_box(
    height: int, width: int, out_size: Tuple[int, int], scales: Sequence[float], max_distort: int
) -> Tuple[int, int, int, int]:
    """(top, left, crop_h, crop_w) of a GroupMultiScaleCrop: crop sides are fractions ``scales``
    of the short side (snapped to the output side when within 3 px), height and width scales at
    most ``max_distort`` apart in the list, placed at one of 13 fixed positions."""
    base = min(height, width)
    sides = [int(base * s) for s in scales]
    crop_hs = [out_size[0] if abs(s - out_size[0]) < 3 else s for s in sides]
    crop_ws = [out_size[1] if abs(s - out_size[1]) < 3 else s for s in sides]
    pairs = [(ch, cw) for i, ch in enumerate(crop_hs) for j, cw in enumerate(crop_ws) if abs(i - j) <= max_distort]
    crop_h, crop_w = pairs[_randint(len(pairs))]
    crop_h, crop_w = max(1, min(crop_h, height)), max(1, min(crop_w, width))
    row, col = _FIXED_POSITIONS[_randint(len(_FIXED_POSITIONS))]
    return row * ((height - crop_h) // 4), col * ((width - crop_w) // 4), crop_h, crop_w
