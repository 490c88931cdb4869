#!/usr/bin/env python
"""The audio demo's recipe study (README "Demos"): one variant of the BRIDLE schedule, scored by
the demo's linear probe on a selection split, never on the test split.

    python tools/demo_study.py [--fresh] NAME [KEY VALUE ...]

Needs a finished `make demo` (its data, fbank cache and pretraining run in --demo-dir). The
selection split (`<demo-dir>/data/studyval.json`, 1000 clips by the val voices, made once) is
five times the demo's val split, so differences of ~2 points are outside its standard error.

- Default: copy the demo's finished iteration-1 phase (`0_encoder_cold`) into
  `<out>/NAME/pretrain` and resume the schedule there with the KEY VALUE overrides (the
  resume check reuses that phase only when the overrides leave it unchanged).
- `--fresh`: run the whole schedule (e.g. with `SEED 1`, or overrides that change iteration 1) and
  also score its iteration-1 encoder (`NAME_iter1`).
- NAME `iter1`: score the demo's own iteration-1 encoder.

Each score (val-selected top-1 on the selection split) is printed and appended to
`<out>/results.jsonl`.
"""
import argparse
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo  # noqa: E402
import demo_lib  # noqa: E402
from demo_lib import REPO  # noqa: E402

SELECTION_CLIPS = 1000
SELECTION_SEED = 22  # the demo's splits use seeds 1-4


def selection_split(data: str) -> str:
    path = os.path.join(data, "studyval.json")
    if not os.path.isfile(path):
        entries = demo.make_split(data, "studyval", SELECTION_CLIPS, demo.VAL_VARIANTS, seed=SELECTION_SEED)
        demo.write_manifest(path, entries)
    return path


def score(name: str, weights: str, spec, selection: str, out: str, env: dict) -> float:
    """The demo's linear probe of ``weights`` with val and test both pointed at the selection split."""
    lp = os.path.join(out, name, "linprobe")
    demo_lib.train_net(spec.linprobe_config, lp, ["MODEL.WEIGHTS", weights] + spec.downstream_opts + [
        "DATASETS.AUDIO.VAL_MANIFEST", selection, "DATASETS.AUDIO.TEST_MANIFEST", selection], env, overwrite=True)
    with open(os.path.join(lp, "final_results.json")) as f:
        top1 = demo_lib.selected(json.load(f))["val_top1"]
    row = {"variant": name, "selection_top1": round(top1, 4), "weights": os.path.relpath(weights, out)}
    with open(os.path.join(out, "results.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    return top1


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name")
    p.add_argument("--fresh", action="store_true", help="run the whole schedule, iteration 1 included")
    p.add_argument("--demo-dir", default=os.path.join(REPO, "output", "demo"))
    p.add_argument("--out", default=os.path.join(REPO, "output", "study"))
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides of demo_pretrain.yaml")
    args = p.parse_args(argv)
    flags = [o for o in args.opts if o.startswith("--")]
    if flags:
        p.error(f"flags {flags} must come before NAME (the KEY VALUE overrides follow it)")
    if len(args.opts) % 2:
        p.error(f"expected KEY VALUE pairs after NAME; got {len(args.opts)} words")
    demo_dir, out = os.path.abspath(args.demo_dir), os.path.abspath(args.out)
    cold = os.path.join(demo_dir, "pretrain", "0_encoder_cold")
    if not os.path.isfile(os.path.join(cold, "model_final.pth")):
        sys.exit(f"demo_study: no finished demo run in '{demo_dir}' (run `make demo` first).")
    spec = demo.make_spec(demo.parser().parse_args(["--output-dir", demo_dir]), demo_dir)  # the demo's options
    selection = selection_split(os.path.join(demo_dir, "data"))
    env = demo_lib.demo_env()
    if args.name == "iter1":
        score("iter1", os.path.join(cold, "model_final.pth"), spec, selection, out, env)
        return
    pre = os.path.join(out, args.name, "pretrain")
    os.makedirs(pre, exist_ok=True)
    if not args.fresh and not os.path.isdir(os.path.join(pre, "0_encoder_cold")):
        shutil.copytree(cold, os.path.join(pre, "0_encoder_cold"))
    demo_lib.train_net(spec.pretrain_config, pre, spec.pretrain_opts + list(args.opts), env, resume=True)
    ckpts = demo_lib.schedule_checkpoints(pre)
    if args.fresh and ckpts["bridle_iter1"] != ckpts["bridle"]:
        score(f"{args.name}_iter1", ckpts["bridle_iter1"], spec, selection, out, env)
    score(args.name, ckpts["bridle"], spec, selection, out, env)

if __name__ == "__main__":
    main()
