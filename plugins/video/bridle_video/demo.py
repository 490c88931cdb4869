"""`make demo-video`: BRIDLE end to end on real video files made offline, in the setting where
self-supervised pretraining is meant to help (many unlabelled clips, few labelled ones), with
two label sets on the same clips: *appearance* (which digit) and *motion* (which of 8
directions the digit moves in; no single frame tells it, see moving_digits.py).

1. data (bridle_video/moving_digits.py): scikit-learn's 1797 real 8 x 8 handwritten digits,
   split by index into pool / val / test images first (60 / 15 / 25 %), each upsampled to
   16 x 16 and moved in a straight line (8 directions, 1-2 pixels per frame) across a 32 x 32
   canvas that wraps around, over a static random texture of its own (``--background``), 16
   frames, written as H.264 mp4 files (PyAV) and read back by the
   video plugin's datasets and decord: the unlabelled pool (``video_folder``, 2 clips per pool
   image), a labelled subset of it (3 clips per (digit, direction) pair) and one val / test clip
   per val / test image (``kinetics_csv`` files, one per label set and split);
2. the BRIDLE schedule of configs/video/demo_pretrain.yaml on the pool;
3. per label set: linear probe and fine-tuning on the labelled clips from the iteration-1 and the
   final BRIDLE encoder and from a random init; logistic regression on the raw clip and on its
   middle frame alone; the final tokenizer's code usage over the pool. Test accuracy is that of
   the evaluation selected on val; nothing is selected on test. Table on stdout,
   OUTPUT_DIR/report.json (``tasks.motion``, ``tasks.appearance``; the top-level ``results`` and
   ``baseline*`` are the motion task's), OUTPUT_DIR/plots.

Run by tools/demo_video.py (`make demo-video`); the driver is bridle/demo/driver.py.
"""

import os
import shutil
import time
from typing import Dict, Optional, Sequence

from bridle import demo as demo_lib
from bridle.demo import REPO, say

from . import moving_digits

# name -> (label column of the clip manifest, classes); the first is the report's top-level task.
# What the digits move over by default: a static random texture (clutter that does not move), chosen
# on val (docs/demos.md): on a black canvas a random-init encoder already reads the direction from
# 2-frame motion energy (linear probe 0.935), so pretraining had nothing to add there.
BACKGROUND, BACKGROUND_LEVEL = "static", 0.5
TASKS = {"motion": ("direction", moving_digits.DIRECTIONS), "appearance": ("digit", 10)}


def middle_frame(clips):
    """[B, C, T, H, W] -> the middle frame [B, C, H, W]: the single-frame baseline's input."""
    return clips[:, :, clips.shape[2] // 2]


def data_look(background: str, background_level: float, speed: Sequence[float]) -> str:
    """A name suffix for the data's look ("" for the black canvas at the default speeds)."""
    look = "" if background == "none" else f"_{background}{background_level:g}"
    if tuple(speed) != tuple(moving_digits.SPEED):
        look += "_speed{:g}-{:g}".format(*speed)
    return look


def prepare_data(
    data: str,
    pool_clips_per_image: int,
    labelled_per_pair: int,
    max_images: int = 0,
    background: str = "none",
    background_level: float = 0.5,
    speed: Sequence[float] = moving_digits.SPEED,
) -> Dict[str, object]:
    """Write the clips and label files once (kept when complete); returns the split sizes."""
    import json

    look = data_look(background, background_level, speed)
    done = os.path.join(data, f"complete_{pool_clips_per_image}_{labelled_per_pair}_{max_images}{look}.json")
    if os.path.isfile(done):
        print(f"data already in {data}")
        with open(done) as f:
            return json.load(f)
    shutil.rmtree(data, ignore_errors=True)
    sizes = moving_digits.build(
        data,
        pool_clips_per_image=pool_clips_per_image,
        labelled_per_pair=labelled_per_pair,
        max_images=max_images,
        background=background,
        background_level=background_level,
        speed=tuple(speed),
    )
    with open(done, "w") as f:
        json.dump(sizes, f, indent=1)
    print(
        f"{sizes['pool_items']} unlabelled pool clips of {sizes['pool_images']} digit images "
        f"({sizes['labelled_items']} of them also labelled), {sizes['val_items']} val and "
        f"{sizes['test_items']} test clips of other digit images; in {data}"
    )
    return sizes


def parser():
    p = demo_lib.base_parser(__doc__, "output/demo_video")
    p.add_argument("--pool-clips-per-image", type=int, default=2, help="unlabelled clips per pool digit image")
    p.add_argument("--labelled-per-pair", type=int, default=3, help="labelled clips per (digit, direction) pair")
    p.add_argument("--max-images", type=int, default=0, help="use only this many digit images (0: all 1797)")
    p.add_argument(
        "--background",
        choices=moving_digits.BACKGROUNDS,
        default=BACKGROUND,
        help="what the digits move over (moving_digits.backdrop): none (black), static (one random texture "
        "per clip), flicker (a new texture every frame)",
    )
    p.add_argument("--background-level", type=float, default=BACKGROUND_LEVEL, help="brightest background pixel (0-1)")
    return p


def make_spec(args, out: str) -> demo_lib.DemoSpec:
    if args.pool_clips_per_image < 1 or args.labelled_per_pair < 1:
        raise SystemExit("--pool-clips-per-image and --labelled-per-pair must be >= 1")
    if not 0.0 <= args.background_level <= 1.0:
        raise SystemExit(f"--background-level {args.background_level}: expected a value in [0, 1]")
    say("Moving digits: writing the clips as H.264 mp4 files")
    data = os.path.join(out, "data")
    sizes = prepare_data(
        data, args.pool_clips_per_image, args.labelled_per_pair, args.max_images, args.background, args.background_level
    )
    tasks = {}
    for name, (label, classes) in TASKS.items():
        csvs = [
            x
            for s in ("TRAIN", "VAL", "TEST")
            for x in (f"DATASETS.VIDEO.{s}_CSV", os.path.join(data, f"{label}_{s.lower()}.csv"))
        ]
        tasks[name] = demo_lib.DemoTask(
            task=f"{name}: {label} top-1 accuracy ({classes} classes, chance {1 / classes:.3f}), "
            f"{sizes['labelled_items']} labelled clips, {sizes['test_items']} test clips of unseen digit images",
            downstream_opts=csvs + ["MODEL.HEAD.NUM_CLASSES", str(classes)] + args.downstream_opts,
        )
    first = next(iter(tasks.values()))
    return demo_lib.DemoSpec(
        name="video",
        task="moving digits: " + " / ".join(f"{n} ({TASKS[n][0]}, {TASKS[n][1]} classes)" for n in TASKS),
        pretrain_opts=["DATASETS.VIDEO.FOLDER_ROOT", os.path.join(data, "pool")] + args.pretrain_opts,
        downstream_opts=first.downstream_opts,  # the first task's (e.g. the online probes' labelled set)
        notes=dict(
            sizes,
            directions=moving_digits.DIRECTIONS,
            background=args.background,
            background_level=args.background_level if args.background != "none" else 0.0,
        ),
        tasks=tasks,
        baselines={"baseline_middle_frame": middle_frame},
        **demo_lib.spec_configs(args.config_dir or os.path.join(REPO, "configs", "video")),
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parser().parse_args(argv)
    out = os.path.abspath(args.output_dir)
    t0 = time.time()
    spec = make_spec(args, out)
    demo_lib.run_demo(spec, out, skip_baseline=args.skip_baseline, t_data=time.time() - t0)
