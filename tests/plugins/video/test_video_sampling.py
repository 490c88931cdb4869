import torch

from bridle_video.compat import pytorchvideo_transforms
from bridle_video.sampling import (
    clip_frame_indices,
    clip_span,
    crop_offsets,
    multiscale_crop_box,
    random_clip_start,
    segment_clip_starts,
)


def test_clip_frame_indices_every_rate_frames_and_pad_short_videos():
    assert clip_span(16, 4) == 61
    assert clip_frame_indices(300, 16, 4, 10) == list(range(10, 74, 4))
    assert clip_frame_indices(7, 4, 2, 0) == [0, 2, 4, 6]
    assert clip_frame_indices(5, 4, 2, 0) == [0, 2, 4, 4]  # short: the last frame repeats


def test_random_and_segment_starts_stay_inside_the_video():
    torch.manual_seed(0)
    starts = {random_clip_start(100, 61) for _ in range(200)}
    assert min(starts) == 0 and max(starts) == 39
    assert random_clip_start(10, 61) == 0
    assert segment_clip_starts(100, 61, 1) == [19]
    assert segment_clip_starts(100, 61, 5) == [0, 10, 20, 29, 39]  # round(k * 39 / 4)
    assert segment_clip_starts(10, 61, 3) == [0, 0, 0]


def test_crop_offsets_spread_along_a_side():
    assert crop_offsets(298, 224, 3) == [0, 37, 74]
    assert crop_offsets(298, 224, 1) == [37]
    assert crop_offsets(224, 224, 3) == [0, 0, 0]


def test_multiscale_crop_box_follows_group_multiscale_crop():
    torch.manual_seed(0)
    h, w, out = 240, 320, (224, 224)
    sides = [240, 210, 180, 158]  # int(240 * s) for s in (1, .875, .75, .66); none within 3 px of 224
    allowed = {(sides[i], sides[j]) for i in range(4) for j in range(4) if abs(i - j) <= 1}
    seen = set()
    for _ in range(300):
        top, left, ch, cw = multiscale_crop_box(h, w, out, [1, 0.875, 0.75, 0.66], 1)
        assert (ch, cw) in allowed
        assert top % ((h - ch) // 4 or 1) == 0 and left % ((w - cw) // 4 or 1) == 0
        assert 0 <= top <= h - ch and 0 <= left <= w - cw
        seen.add((ch, cw))
    assert seen == allowed
    # A side within 3 px of the output size snaps to it (256 * 0.875 = 224).
    sizes = {multiscale_crop_box(256, 340, out, [0.875], 0)[2:] for _ in range(5)}
    assert sizes == {(224, 224)}


def test_pytorchvideo_transforms_import_on_this_torchvision():
    ptv = pytorchvideo_transforms()
    aug = ptv.RandAugment(magnitude=9, num_layers=2)
    clip = torch.rand(4, 3, 16, 16)
    assert aug(clip).shape == clip.shape
