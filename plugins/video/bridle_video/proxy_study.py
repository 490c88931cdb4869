"""The video demo's cheap setting study (docs/demos.md, "The video demo"): one data look and one
pretraining variant, scored on **val only** by a frozen-feature proxy of the linear probe.

    python -m bridle_video.proxy_study NAME [--background static] [--speed 1 2]
        [--schedule encoder_cold,tokenizer,encoder] [--iters 600] [--e2iters 600] [KEY VALUE ...]

1. the demo's moving digits (``bridle_video.demo.prepare_data``; one data folder per look, kept);
2. ``tools/train_net.py`` with configs/video/demo_pretrain.yaml, the given schedule and phase
   lengths and the KEY VALUE overrides;
3. the mean-pooled final tokens of the 240 labelled clips and the 270 val clips ("eval" views,
   ``tools/extract_features.py``'s features),
   for the trained encoder, its iteration-1 encoder (when the schedule has more than one phase)
   and a random init of the same model (``torch.manual_seed(0)``); per label set (direction,
   digit) a logistic regression on standardised features, C in {0.01, 0.1, 1, 10} picked by val
   top-1, which is reported.

The proxy ranks settings against each other; it underrates a random init compared with the
demo's own linear probe (BatchNorm, a trained head, crop augmentation), so a setting it likes is
confirmed by a real `make demo-video` run. Results are appended to
``output/video_proxy/results.jsonl`` (one JSON row per run).
"""

import argparse
import json
import os
from typing import Dict, List, Sequence

import numpy as np
import torch

from bridle.demo.driver import REPO, demo_env, train_net

from . import demo, moving_digits

LABELS = ("direction", "digit")  # moving_digits' label columns: motion, appearance
PHASE_ITERS = {"encoder_cold": "PRETRAIN.PHASES.ENCODER_COLD.MAX_ITER", "encoder": "PRETRAIN.PHASES.ENCODER.MAX_ITER"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="the variant's name (its folder under --out)")
    p.add_argument("--out", default=os.path.join(REPO, "output", "video_proxy"))
    p.add_argument("--background", choices=moving_digits.BACKGROUNDS, default="none")
    p.add_argument("--background-level", type=float, default=0.5)
    p.add_argument("--speed", type=float, nargs=2, default=list(moving_digits.SPEED), help="pixels per frame: LOW HIGH")
    p.add_argument("--schedule", default="encoder_cold", help="comma-separated phases")
    p.add_argument("--iters", type=int, default=600, help="encoder_cold iterations")
    p.add_argument("--e2iters", type=int, default=600, help="iteration-2 encoder phase iterations")
    p.add_argument("--max-images", type=int, default=0, help="only this many digit images (0: all; tests)")
    p.add_argument("opts", nargs="*", help="KEY VALUE overrides of demo_pretrain.yaml")
    return p


def split_features(cfg, ckpt: dict, data: str, split: str) -> Dict[str, tuple]:
    """``{label: (features [N, D], labels [N])}`` for both label sets of one split: the encoder's
    mean-pooled "eval" features (bridle.evaluation.features.extract) are computed once, since the
    label sets' csv files list the same clips in the same order."""
    from bridle.evaluation.features import extract

    rows = {}
    for label in LABELS:
        with open(os.path.join(data, f"{label}_{split}.csv")) as f:
            rows[label] = [line.split() for line in f if line.strip()]
    if [r[0] for r in rows[LABELS[0]]] != [r[0] for r in rows[LABELS[1]]]:
        raise RuntimeError(f"{data}: the {split} csv files of {LABELS} list different clips.")
    c = cfg.clone()
    c.defrost()
    c.DATASETS.TEST, c.DATASETS.VIDEO.TEST_CSV = "kinetics_csv", os.path.join(data, f"{LABELS[0]}_{split}.csv")
    feats, _, index, _ = extract(c, ckpt, "test")  # index: the readable clips
    return {label: (feats, np.array([int(r[1]) for r in rows[label]])[index]) for label in LABELS}


def proxy_top1(train, val) -> float:
    """Val top-1 of the logistic regression with the best C on val."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    (xtr, ytr), (xva, yva) = train, val
    sc = StandardScaler().fit(xtr)
    xtr, xva = sc.transform(xtr), sc.transform(xva)
    return max(
        float(LogisticRegression(C=c, max_iter=3000).fit(xtr, ytr).score(xva, yva)) for c in (0.01, 0.1, 1.0, 10.0)
    )


def main(argv: Sequence[str] = None) -> Dict[str, object]:
    a = parser().parse_intermixed_args(argv)
    if len(a.opts) % 2:
        raise SystemExit(f"expected KEY VALUE pairs after NAME; got {len(a.opts)} words")
    schedule: List[str] = [s for s in a.schedule.split(",") if s]
    torch.set_num_threads(1)
    look = demo.data_look(a.background, a.background_level, a.speed)
    data = os.path.join(a.out, "data" + look + (f"_max{a.max_images}" if a.max_images else ""))
    demo.prepare_data(data, 2, 3, a.max_images, a.background, a.background_level, a.speed)
    pre = os.path.join(a.out, a.name, "pretrain")
    opts = ["DATASETS.VIDEO.FOLDER_ROOT", os.path.join(data, "pool"), "DATALOADER.NUM_WORKERS", "0"]
    opts += ["TEST.ONLINE_PROBE.ENABLED", "False"]  # scored offline below (the demo's probe set is not here)
    opts += ["PRETRAIN.SCHEDULE", "[" + ",".join(f"'{s}'" for s in schedule) + "]"]
    opts += [PHASE_ITERS["encoder_cold"], str(a.iters), PHASE_ITERS["encoder"], str(a.e2iters)] + list(a.opts)
    config = os.path.join(REPO, "configs", "video", "demo_pretrain.yaml")
    final = os.path.join(pre, f"{len(schedule) - 1}_{schedule[-1]}", "model_final.pth")
    if not os.path.isfile(final):
        train_net(config, pre, opts, demo_env(), resume=os.path.isdir(pre))

    from bridle.checkpoint import load_checkpoint_file
    from bridle.config import load_config
    from bridle.modeling.vit import build_encoder

    cfg = load_config(config, opts + ["MODEL.ENCODER.DROP_PATH", "0.0"])
    encoders = {"trained": final, "random": ""}
    if len(schedule) > 1:
        encoders["iter1"] = os.path.join(pre, f"0_{schedule[0]}", "model_final.pth")
    row: Dict[str, object] = {"name": a.name, "background": a.background, "speed": a.speed, "schedule": schedule}
    row.update(iters=a.iters, e2iters=a.e2iters, opts=list(a.opts))
    for which, weights in encoders.items():
        if weights:
            ckpt = load_checkpoint_file(weights)
        else:  # a random init of the same encoder, seeded
            torch.manual_seed(0)
            ckpt = {"model": {f"encoder.{k}": v for k, v in build_encoder(cfg).state_dict().items()}}
        train, val = split_features(cfg, ckpt, data, "train"), split_features(cfg, ckpt, data, "val")
        for label in LABELS:
            row[f"{which}_{label}"] = round(proxy_top1(train[label], val[label]), 3)
    print(json.dumps(row), flush=True)
    with open(os.path.join(a.out, "results.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


if __name__ == "__main__":
    main()
