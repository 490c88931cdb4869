"""`make demo-image`: BRIDLE end to end on real images available offline, in the setting where
self-supervised pretraining is meant to help: many unlabelled images, few labelled ones.

1. data: scikit-learn's 1797 real 8 x 8 handwritten digits (no download), split by the image
   plugin's seeded permutation (DATASETS.IMAGE.DIGITS_SEED 0: 20% test, 10% val, the rest
   train), upsampled (bicubic) to 32 x 32 and written as PNG folders: the train digits are the
   unlabelled pretraining pool (pool/train/unlabelled/), a small class-balanced labelled subset
   of it (labelled/train/<digit>/), and the val / test digits (labelled/{val,test}/<digit>/);
2. the BRIDLE schedule of configs/image/demo_pretrain.yaml on the pool;
3. linear probe and fine-tuning on the labelled subset from the iteration-1 and the final BRIDLE
   encoder and from a random init, plus logistic regression on the raw pixels; the final
   tokenizer's code usage over the pool. Test accuracy is that of the evaluation selected on
   val; nothing is selected on test. Table on stdout, OUTPUT_DIR/report.json, OUTPUT_DIR/plots.

Run by tools/demo_image.py (`make demo-image`); the driver is bridle/demo/driver.py.
"""

import os
import shutil
import time
from typing import Optional, Sequence

from bridle import demo as demo_lib
from bridle.demo import REPO, say

SIZE = 32  # = MODEL.PATCH_EMBED.INPUT_SIZE of configs/image/demo_*.yaml


def prepare_data(data: str, per_class: int) -> dict:
    """Write the PNG folders (kept when complete); returns the roots and split sizes."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    from bridle_image.digits_dataset import digits_split_indices

    roots = {"pool": os.path.join(data, "pool"), "labelled": os.path.join(data, "labelled")}
    done = os.path.join(data, f"complete_{per_class}")
    digits = load_digits()
    split = {s: digits_split_indices(len(digits.target), s, 0, 0.1, 0.2) for s in ("train", "val", "test")}
    rng = np.random.RandomState(4)
    labelled = np.sort(
        np.concatenate(
            [
                rng.choice(split["train"][digits.target[split["train"]] == c], per_class, replace=False)
                for c in range(10)
            ]
        )
    )
    sizes = {
        "pool_items": len(split["train"]),
        "labelled_items": len(labelled),
        "val_items": len(split["val"]),
        "test_items": len(split["test"]),
    }
    if os.path.isfile(done):
        print(f"data already in {data}")
        return dict(roots, **sizes)
    shutil.rmtree(data, ignore_errors=True)

    def write(idx, folder, by_class):
        for i in idx:
            d = os.path.join(folder, str(digits.target[i]) if by_class else "unlabelled")
            os.makedirs(d, exist_ok=True)
            img = Image.fromarray(np.round(digits.images[i] * (255.0 / 16.0)).astype(np.uint8))
            img.resize((SIZE, SIZE), Image.BICUBIC).save(os.path.join(d, f"{i:04d}.png"))

    write(split["train"], os.path.join(roots["pool"], "train"), by_class=False)
    write(labelled, os.path.join(roots["labelled"], "train"), by_class=True)
    write(split["val"], os.path.join(roots["labelled"], "val"), by_class=True)
    write(split["test"], os.path.join(roots["labelled"], "test"), by_class=True)
    open(done, "w").close()
    print(
        f"{sizes['pool_items']} unlabelled pool digits ({sizes['labelled_items']} of them also labelled), "
        f"{sizes['val_items']} val and {sizes['test_items']} test digits; in {data}"
    )
    return dict(roots, **sizes)


def parser():
    p = demo_lib.base_parser(__doc__, "output/demo_image")
    p.add_argument("--labelled-per-class", type=int, default=10, help="labelled digits per class")
    return p


def make_spec(args, out: str) -> demo_lib.DemoSpec:
    say("Writing the scikit-learn digits as PNG folders")
    data = prepare_data(os.path.join(out, "data"), args.labelled_per_class)
    return demo_lib.DemoSpec(
        name="image",
        task=f"handwritten-digit top-1 accuracy (10 classes, chance 0.10), {data['labelled_items']} "
        f"labelled digits, {data['test_items']} test digits",
        pretrain_opts=["DATASETS.IMAGE.ROOT", data["pool"]] + args.pretrain_opts,
        downstream_opts=["DATASETS.IMAGE.ROOT", data["labelled"]] + args.downstream_opts,
        notes={k: v for k, v in data.items() if k.endswith("_items")},
        **demo_lib.spec_configs(args.config_dir or os.path.join(REPO, "configs", "image")),
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parser().parse_args(argv)
    out = os.path.abspath(args.output_dir)
    t0 = time.time()
    spec = make_spec(args, out)
    demo_lib.run_demo(spec, out, skip_baseline=args.skip_baseline, t_data=time.time() - t0)
