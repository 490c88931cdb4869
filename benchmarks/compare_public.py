#!/usr/bin/env python
"""Side-by-side step time of this repo and the public BRIDLE code on the same machine, phases
alternating between the two (ours, public, ours, public, ...) so load changes hit both alike.

    OMP_NUM_THREADS=1 python benchmarks/compare_public.py --public-root /tmp/pub \
        --phases encoder tokenizer --batch-size 2 --rounds 2 --json benchmarks/out/compare_cpu.json

Ours is ``tools/benchmark.py --component <phase>_phase`` (audio ViT-B recipe
configs/audio/pretrain_rq.yaml, SOLVER.PRECISION fp32 unless ``--precision``); the public code is
``benchmarks/public_step.py`` (its audio scripts' settings). Each side runs in its own process;
the reported time per side is the median over rounds of each round's median step, by
default in process CPU time (``--clock process``): with OMP_NUM_THREADS=1 on a CPU shared with
other jobs, wall time mostly measures the others.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_json(cmd, path, env=None):
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(path) as f:
        data = json.load(f)
    return data["rows"][0] if "rows" in data else data


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--public-root", default="/tmp/pub")
    ap.add_argument("--phases", nargs="+", default=["encoder", "tokenizer"], choices=["encoder", "tokenizer"])
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--opts", nargs="*", default=[], help="KEY VALUE overrides for our side")
    ap.add_argument("--json", default="")
    ap.add_argument(
        "--clock",
        choices=["wall", "process"],
        default="process",
        help="process CPU time (default; robust on a shared CPU with OMP_NUM_THREADS=1) or wall",
    )
    args = ap.parse_args(argv)
    tmp = os.path.join(ROOT, "benchmarks", "out")
    os.makedirs(tmp, exist_ok=True)
    common = [
        "--batch-size",
        str(args.batch_size),
        "--precision",
        args.precision,
        "--device",
        args.device,
        "--iters",
        str(args.iters),
        "--warmup",
        str(args.warmup),
        "--clock",
        args.clock,
    ]
    # the public code imports its own packages (model, util) as top-level names
    root = os.path.abspath(args.public_root)
    public_env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p))
    results = []
    for phase in args.phases:
        ours, public = [], []
        for _ in range(args.rounds):
            o = os.path.join(tmp, f".ours_{phase}.json")
            ours.append(
                run_json(
                    [
                        sys.executable,
                        "tools/benchmark.py",
                        "--component",
                        f"{phase}_phase",
                        "--no-flops",
                        "--json",
                        o,
                        *common,
                        "--opts",
                        *args.opts,
                    ],
                    o,
                )["ms"]
            )
            p = os.path.join(tmp, f".public_{phase}.json")
            public.append(
                run_json(
                    [
                        sys.executable,
                        "benchmarks/public_step.py",
                        "--public-root",
                        args.public_root,
                        "--phase",
                        phase,
                        "--json",
                        p,
                        *common,
                    ],
                    p,
                    env=public_env,
                )["ms"]
            )
        ours.sort()
        public.sort()
        o_ms, p_ms = ours[len(ours) // 2], public[len(public) // 2]
        row = {
            "phase": phase,
            "precision": args.precision,
            "batch": args.batch_size,
            "clock": args.clock,
            "ours_ms": o_ms,
            "public_ms": p_ms,
            "speedup": round(p_ms / o_ms, 2),
            "speedup_of_minima": round(public[0] / ours[0], 2),
            "ours_rounds_ms": ours,
            "public_rounds_ms": public,
            "threads": os.environ.get("OMP_NUM_THREADS", ""),
            "opts": args.opts,
        }
        print(json.dumps(row), flush=True)
        results.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
