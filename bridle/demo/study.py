"""A demo's recipe study: one variant of the BRIDLE schedule, scored by the demo's linear probe on
a selection split, never on the test split.

The plugin that owns the demo supplies its :class:`~bridle.demo.driver.DemoSpec` and the
``KEY VALUE`` overrides that point the linear probe's val and test splits at the selection
split (:func:`main`'s ``make_inputs``); the rest (copying the demo's iteration-1 phase, resuming
the schedule with the variant's overrides, scoring, ``results.jsonl``) is the same for every
modality.
"""

import argparse
import json
import os
import shutil
import sys
from typing import Callable, List, Optional, Sequence, Tuple

from .driver import REPO, DemoSpec, demo_env, pretrain_opts, schedule_checkpoints, selected, train_net

#: ``make_inputs(demo_dir) -> (spec, selection_opts)``: the demo's spec (its options, its data in
#: ``demo_dir``) and the overrides that make val and test the selection split.
MakeInputs = Callable[[str], Tuple[DemoSpec, List[str]]]


def score(name: str, weights: str, spec: DemoSpec, selection_opts: Sequence[str], out: str, env: dict) -> float:
    """The demo's linear probe of ``weights`` with val and test both pointed at the selection split."""
    lp = os.path.join(out, name, "linprobe")
    train_net(
        spec.linprobe_config,
        lp,
        ["MODEL.WEIGHTS", weights] + spec.downstream_opts + list(selection_opts),
        env,
        overwrite=True,
    )
    with open(os.path.join(lp, "final_results.json")) as f:
        top1 = selected(json.load(f))["val_top1"]
    row = {"variant": name, "selection_top1": round(top1, 4), "weights": os.path.relpath(weights, out)}
    with open(os.path.join(out, "results.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    return top1


def build_parser(doc: str, default_demo_dir: str, default_out: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name")
    p.add_argument("--fresh", action="store_true", help="run the whole schedule, iteration 1 included")
    p.add_argument("--demo-dir", default=default_demo_dir)
    p.add_argument("--out", default=default_out)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides of demo_pretrain.yaml")
    return p


def main(
    argv: Optional[Sequence[str]],
    doc: str,
    make_inputs: MakeInputs,
    default_demo_dir: str = os.path.join(REPO, "output", "demo"),
    default_out: str = os.path.join(REPO, "output", "study"),
    demo_command: str = "make demo",
) -> None:
    """Parse ``NAME [--fresh] [KEY VALUE ...]`` and run the study of one variant (or, NAME
    ``iter1``, score the demo's own iteration-1 encoder)."""
    p = build_parser(doc, default_demo_dir, default_out)
    args = p.parse_args(argv)
    flags = [o for o in args.opts if o.startswith("--")]
    if flags:
        p.error(f"flags {flags} must come before NAME (the KEY VALUE overrides follow it)")
    if len(args.opts) % 2:
        p.error(f"expected KEY VALUE pairs after NAME; got {len(args.opts)} words")
    demo_dir, out = os.path.abspath(args.demo_dir), os.path.abspath(args.out)
    cold = os.path.join(demo_dir, "pretrain", "0_encoder_cold")
    if not os.path.isfile(os.path.join(cold, "model_final.pth")):
        sys.exit(f"demo_study: no finished demo run in '{demo_dir}' (run `{demo_command}` first).")
    spec, selection_opts = make_inputs(demo_dir)
    env = demo_env()
    if args.name == "iter1":
        score("iter1", os.path.join(cold, "model_final.pth"), spec, selection_opts, out, env)
        return
    pre = os.path.join(out, args.name, "pretrain")
    os.makedirs(pre, exist_ok=True)
    if not args.fresh and not os.path.isdir(os.path.join(pre, "0_encoder_cold")):
        shutil.copytree(cold, os.path.join(pre, "0_encoder_cold"))
    train_net(spec.pretrain_config, pre, pretrain_opts(spec) + list(args.opts), env, resume=True)
    ckpts = schedule_checkpoints(pre)
    if args.fresh and ckpts["bridle_iter1"] != ckpts["bridle"]:
        score(f"{args.name}_iter1", ckpts["bridle_iter1"], spec, selection_opts, out, env)
    score(args.name, ckpts["bridle"], spec, selection_opts, out, env)
