"""Moving digits: real handwritten strokes (scikit-learn's 1797 8 x 8 digits, no download) moving
across a black canvas, written as H.264 mp4 files: Moving MNIST (Srivastava et al. 2015, arXiv
1502.04681) with one digit that moves in a straight line on a canvas that wraps around (a torus:
what leaves on the right comes back on the left).

Each clip has two labels:

- ``digit`` (appearance): which digit, 0-9; any single frame shows it;
- ``direction`` (motion): one of 8 directions (0 = right, then counter-clockwise in steps of
  45 degrees: 1 = up-right, 2 = up, ... 7 = down-right). The start point is uniform on the
  canvas and the canvas wraps around, so in *every* frame the digit's position is uniform
  whatever the direction: no single frame says anything about the direction, only the change
  across frames does.

The digit (upsampled bicubically to ``digit_size``) moves ``speed`` pixels per frame, a speed
drawn uniformly from ``SPEED``, at sub-pixel positions (bilinear), over a background
(:func:`backdrop`: black, a static random texture, or one that changes every frame). The images are split by index
*before* any clip is made (:func:`split_images`), so the val and test clips show digit images
that no pool or labelled clip shows.
"""

import csv
import math
import os
from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence

import numpy as np

DIRECTIONS = 8
DIRECTION_NAMES = ["right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right"]
SPEED = (1.0, 2.0)  # pixels per frame
SPLIT_FRACTIONS = {"pool": 0.6, "val": 0.15, "test": 0.25}  # of the 1797 digit images
MANIFEST_FIELDS = ["path", "split", "labelled", "image_index", "digit", "direction", "speed", "x_mid", "y_mid"]


@dataclass
class Clip:
    path: str  # relative to the data root
    split: str  # "pool", "val" or "test"
    labelled: int  # 1: a pool clip that is also in the labelled train set
    image_index: int  # index into sklearn.datasets.load_digits()
    digit: int
    direction: int
    speed: float
    x_mid: float  # top-left corner of the digit in the middle frame (pixels)
    y_mid: float


def split_images(num_images: int, seed: int, max_images: int = 0) -> Dict[str, np.ndarray]:
    """A seeded permutation of the image indices (its first ``max_images`` when > 0) cut into
    pool / val / test (SPLIT_FRACTIONS)."""
    perm = np.random.RandomState(seed).permutation(num_images)
    if max_images > 0:
        perm = perm[:max_images]
        num_images = len(perm)
    n_val = int(round(num_images * SPLIT_FRACTIONS["val"]))
    n_test = int(round(num_images * SPLIT_FRACTIONS["test"]))
    return {
        "pool": np.sort(perm[n_val + n_test :]),
        "val": np.sort(perm[:n_val]),
        "test": np.sort(perm[n_val : n_val + n_test]),
    }


def upsampled_digits(size: int) -> np.ndarray:
    """float32 [1797, size, size] in [0, 1]: the digits, upsampled bicubically (PIL)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    images = load_digits().images  # [N, 8, 8], values 0..16
    out = np.empty((len(images), size, size), np.float32)
    for i, im in enumerate(images):
        pil = Image.fromarray(np.round(im * (255.0 / 16.0)).astype(np.uint8))
        out[i] = np.asarray(pil.resize((size, size), Image.BICUBIC), np.float32) / 255.0
    return out


def velocity(direction: int, speed: float) -> np.ndarray:
    """(dx, dy) per frame in image coordinates (y grows downwards)."""
    a = 2.0 * math.pi * direction / DIRECTIONS
    return np.array([speed * math.cos(a), -speed * math.sin(a)])


BACKGROUNDS = ("none", "static", "flicker")


def backdrop(kind: str, level: float, frames: int, canvas: int, seed: int) -> np.ndarray:
    """float32 [frames, canvas, canvas] in [0, level]: what the digit moves over. "none": black;
    "static": one random texture (uniform noise smoothed by a 3 x 3 box, wrapped), the same in
    every frame (clutter that does not move); "flicker": a new such texture every frame."""
    if kind not in BACKGROUNDS:
        raise ValueError(f"background '{kind}': expected one of {', '.join(BACKGROUNDS)}")
    out = np.zeros((frames, canvas, canvas), np.float32)
    if kind == "none" or level <= 0:
        return out
    rng = np.random.RandomState(seed)
    n = 1 if kind == "static" else frames
    noise = rng.uniform(0.0, 1.0, size=(n, canvas, canvas)).astype(np.float32)
    smooth = sum(np.roll(np.roll(noise, dy, axis=1), dx, axis=2) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9.0
    smooth = (smooth - smooth.min()) / max(float(smooth.max() - smooth.min()), 1e-6)
    out[:] = level * smooth
    return out


def render(image: np.ndarray, canvas: int, positions: np.ndarray, background=None) -> np.ndarray:
    """uint8 [T, canvas, canvas]: ``image`` with its top-left corner at each (x, y) of ``positions``
    [T, 2], modulo the canvas (it wraps around), sub-pixel by bilinear weights of the four
    integer placements; over ``background`` [T, canvas, canvas] (float in [0, 1], the brighter
    of the two wins) when given."""
    d = image.shape[0]
    out = np.zeros((len(positions), canvas, canvas), np.float32)
    for t, (x, y) in enumerate(positions):
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        for dy, wy in ((0, 1.0 - fy), (1, fy)):
            rows = (y0 + dy + np.arange(d)) % canvas
            for dx, wx in ((0, 1.0 - fx), (1, fx)):
                cols = (x0 + dx + np.arange(d)) % canvas
                out[t][np.ix_(rows, cols)] += (wy * wx) * image
    if background is not None:
        out = np.maximum(out, background)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def write_mp4(path: str, frames: np.ndarray, fps: int = 25) -> None:
    """H.264 mp4 (PyAV, libx264, yuv420p) of gray uint8 frames [T, H, W], lossless (QP 0): the
    same bytes every run. Lossy x264 (e.g. CRF 17) wrote different bytes, and decord decoded
    different pixels, for a few clips in 50 when the same frames were encoded twice in one
    process, which made the demo's data (and numbers) differ from one generation to the next."""
    import av

    with av.open(path, mode="w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"qp": "0"})
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        for frame in frames:
            rgb = np.ascontiguousarray(np.repeat(frame[:, :, None], 3, axis=2))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def make_clips(
    targets: np.ndarray,
    images: Sequence[int],
    split: str,
    clips_per_image: int,
    seed: int,
    canvas: int,
    frames: int,
    speed: Sequence[float] = SPEED,
) -> List[tuple]:
    """(Clip, positions [frames, 2]) for ``clips_per_image`` clips of each image in ``images``;
    the directions cycle through seeded permutations (balanced), speed (uniform in ``speed``,
    pixels per frame) and start are uniform."""
    rng = np.random.RandomState(seed)
    order = [int(i) for _ in range(clips_per_image) for i in images]
    directions = np.concatenate([rng.permutation(DIRECTIONS) for _ in range(math.ceil(len(order) / DIRECTIONS))])
    steps = np.arange(frames) - (frames - 1) / 2.0
    jobs = []
    for n, image_index in enumerate(order):
        direction = int(directions[n])
        v = float(rng.uniform(*speed))
        mid = rng.uniform(0.0, canvas, size=2)  # the middle frame's position; every frame's is uniform too
        positions = mid[None, :] + steps[:, None] * velocity(direction, v)[None, :]
        clip = Clip(
            path=f"{split}/{split}_{n:05d}.mp4",
            split=split,
            labelled=0,
            image_index=image_index,
            digit=int(targets[image_index]),
            direction=direction,
            speed=round(v, 4),
            x_mid=round(float(mid[0]), 3),
            y_mid=round(float(mid[1]), 3),
        )
        jobs.append((clip, positions))
    return jobs


def pick_labelled(clips: List[Clip], per_pair: int, seed: int) -> None:
    """Mark ``per_pair`` pool clips of every (digit, direction) pair (all of them when fewer) as
    labelled, in place."""
    rng = np.random.RandomState(seed)
    by_pair: Dict[tuple, List[int]] = {}
    for i, c in enumerate(clips):
        by_pair.setdefault((c.digit, c.direction), []).append(i)
    for pair in sorted(by_pair):
        idx = by_pair[pair]
        for i in rng.choice(idx, min(per_pair, len(idx)), replace=False):
            clips[i].labelled = 1


def write_manifest(path: str, clips: Sequence[Clip]) -> None:
    with open(path + ".tmp", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
        w.writeheader()
        for c in clips:
            w.writerow(asdict(c))
    os.replace(path + ".tmp", path)


def read_manifest(path: str) -> List[Clip]:
    with open(path, newline="") as f:
        return [
            Clip(
                path=r["path"],
                split=r["split"],
                labelled=int(r["labelled"]),
                image_index=int(r["image_index"]),
                digit=int(r["digit"]),
                direction=int(r["direction"]),
                speed=float(r["speed"]),
                x_mid=float(r["x_mid"]),
                y_mid=float(r["y_mid"]),
            )
            for r in csv.DictReader(f)
        ]


def write_label_csv(path: str, clips: Sequence[Clip], label: str) -> None:
    """A "kinetics_csv" file (``path label`` lines, paths relative to its folder)."""
    with open(path + ".tmp", "w") as f:
        f.write("".join(f"{c.path} {getattr(c, label)}\n" for c in clips))
    os.replace(path + ".tmp", path)


def build(
    root: str,
    pool_clips_per_image: int = 2,
    labelled_per_pair: int = 3,
    canvas: int = 32,
    digit_size: int = 16,
    frames: int = 16,
    seed: int = 0,
    max_images: int = 0,
    speed: Sequence[float] = SPEED,
    background: str = "none",
    background_level: float = 0.5,
) -> Dict[str, object]:
    """Write every clip under ``root`` ({pool,val,test}/*.mp4), ``clips.csv`` (the manifest: one
    row per clip with both labels, the digit image it shows and its trajectory) and, per label
    set (``digit``, ``direction``), the "kinetics_csv" files ``<label>_{train,val,test}.csv``
    (train = the labelled pool clips). ``max_images`` > 0: only that many digit images (small
    test runs); ``speed``: the (low, high) range of speeds in pixels per frame; ``background``,
    ``background_level``: what the digit moves over (:func:`backdrop`, seeded per clip). Returns
    the split sizes."""
    from sklearn.datasets import load_digits

    targets = load_digits().target
    digits = upsampled_digits(digit_size)
    split = split_images(len(digits), seed, max_images)
    jobs = []
    for k, (name, per_image) in enumerate((("pool", pool_clips_per_image), ("val", 1), ("test", 1))):
        jobs += make_clips(targets, split[name], name, per_image, seed * 10 + k + 1, canvas, frames, speed)
    clips = [c for c, _ in jobs]
    pick_labelled([c for c in clips if c.split == "pool"], labelled_per_pair, seed * 10 + 4)
    for name in ("pool", "val", "test"):
        os.makedirs(os.path.join(root, name), exist_ok=True)
    for n, (clip, positions) in enumerate(jobs):
        bg = backdrop(background, background_level, frames, canvas, seed * 1_000_003 + n)
        write_mp4(os.path.join(root, clip.path), render(digits[clip.image_index], canvas, positions, bg))
    write_manifest(os.path.join(root, "clips.csv"), clips)
    sets = {
        "train": [c for c in clips if c.labelled],
        "val": [c for c in clips if c.split == "val"],
        "test": [c for c in clips if c.split == "test"],
    }
    for label in ("digit", "direction"):
        for s, members in sets.items():
            write_label_csv(os.path.join(root, f"{label}_{s}.csv"), members, label)
    return {
        "pool_items": sum(c.split == "pool" for c in clips),
        "labelled_items": len(sets["train"]),
        "val_items": len(sets["val"]),
        "test_items": len(sets["test"]),
        "pool_images": int(len(split["pool"])),
        "val_images": int(len(split["val"])),
        "test_images": int(len(split["test"])),
    }
