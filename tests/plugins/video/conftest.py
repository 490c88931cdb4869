import os

import av
import numpy as np
import pytest
from skimage import data as skdata

import bridle_video
from bridle.config import get_cfg


def write_mp4(path, frames):
    """H.264 mp4 of uint8 RGB frames [N, H, W, 3] (PyAV)."""
    with av.open(path, mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            container.mux(stream.encode(image))
        container.mux(stream.encode())


RAMP_STEP = 6  # gray level of frame i in ramp.mp4 is RAMP_STEP * i


@pytest.fixture
def ramp_step():
    return RAMP_STEP


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory):
    """Tiny clips: a camera pan over a real photo, a gray-level ramp that encodes the frame
    index, a 5-frame clip, a corrupt file, and Kinetics-style CSVs listing them."""
    root = tmp_path_factory.mktemp("videos")
    photo = skdata.astronaut()
    pan = np.stack([photo[100 + i : 164 + i, 80 + 3 * i : 176 + 3 * i] for i in range(40)])  # 40 x 64 x 96
    ramp = np.stack([np.full((48, 64, 3), RAMP_STEP * i, np.uint8) for i in range(40)])
    os.makedirs(root / "clips" / "nested")
    write_mp4(str(root / "clips" / "pan.mp4"), pan)
    write_mp4(str(root / "clips" / "nested" / "ramp.mp4"), ramp)
    write_mp4(str(root / "clips" / "short.mp4"), pan[:5])
    (root / "clips" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated garbage" * 8)
    (root / "clips" / "notes.txt").write_text("not a video")
    train = ["clips/pan.mp4 0", "clips/nested/ramp.mp4 1", "clips/short.mp4 2", "clips/broken.mp4 1"]
    (root / "train.csv").write_text("\n".join(train) + "\n")
    (root / "test.csv").write_text("path label\nclips/pan.mp4 0\nclips/nested/ramp.mp4 1\n")
    return root


@pytest.fixture
def video_cfg(video_dir):
    """Core defaults + the video keys; clips of 4 frames every 2nd frame, 32 x 32 crops."""
    cfg = get_cfg(load_plugins=False)
    bridle_video.add_config(cfg)
    cfg.MODEL.PATCH_EMBED.NAME = "tubelet"
    cfg.MODEL.PATCH_EMBED.INPUT_SIZE = [4, 32, 32]
    cfg.MODEL.PATCH_EMBED.PATCH_SIZE = [2, 16, 16]
    cfg.MODEL.MASK.NAME = "tube"
    cfg.MODEL.MASK.RATIO = 0.9
    cfg.MODEL.HEAD.NUM_CLASSES = 3
    cfg.INPUT.VIDEO.SAMPLING_RATE = 2
    cfg.INPUT.VIDEO.TEST_SHORT_SIDE_SIZE = 32
    cfg.INPUT.VIDEO.TEST_NUM_SEGMENTS = 2
    cfg.INPUT.VIDEO.TEST_NUM_CROPS = 3
    cfg.DATASETS.VIDEO.TRAIN_CSV = str(video_dir / "train.csv")
    cfg.DATASETS.VIDEO.VAL_CSV = str(video_dir / "test.csv")
    cfg.DATASETS.VIDEO.TEST_CSV = str(video_dir / "test.csv")
    cfg.DATASETS.VIDEO.FOLDER_ROOT = str(video_dir / "clips")
    return cfg
