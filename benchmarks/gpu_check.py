#!/usr/bin/env python
"""The GPU check: one run, one JSON file. Run it through ``benchmarks/gpu_check.sh``.

On a GPU (default ``--device cuda``) it measures, for the audio ViT-B recipe at batch 32
(configs/audio/pretrain_rq.yaml, finetune_as2m.yaml): encoder phase (cold start), tokenizer
phase and fine-tune step in bf16 and fp16, eager and torch.compile — samples/s, step ms,
GFLOP/sample (FlopCounterMode), achieved TFLOP/s, MFU against the bf16 matmul peak measured
first, peak memory — then the image and video recipes once each (bf16, eager), AdamW fused vs
foreach, activation checkpointing, and batched fbank (device vs CPU).

``--device cpu`` is the smoke mode: tiny configs, batch 2, one timed iteration, so the whole
path is exercised in about a minute on a laptop.

Robustness: every measurement runs in its own try/except (an error is recorded in the JSON and
the next one runs), measurements are skipped once the global ``--budget-s`` would be exceeded,
and the JSON is rewritten after every measurement, so a killed run still leaves its results.
"""

import argparse
import json
import os
import platform
import sys
import time
import traceback

import torch

from bridle import benchmark as B  # the library behind tools/benchmark.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def plan(smoke: bool):
    """(label, argv for tools/benchmark.py, estimated seconds), cheapest and most needed first."""
    if smoke:
        audio = ["--config-file", "configs/audio/tiny_pretrain.yaml"]
        ft = ["--finetune-config", "configs/audio/demo_finetune.yaml"]
        image = ["--config-file", "configs/image/tiny_pretrain.yaml"]
        video = ["--config-file", "configs/video/tiny_pretrain.yaml"]
        bs, img_bs, vid_bs = "2", "2", "2"
        it = ["--iters", "1", "--warmup", "1"]
        # no C++ code generation on a CPU in the smoke mode: dynamo + AOT autograd only
        comp = ["--compile", "--compile-backend", "aot_eager"]
        compile_cost = 60
    else:
        audio = ["--config-file", "configs/audio/pretrain_rq.yaml"]
        ft = ["--finetune-config", "configs/audio/finetune_as2m.yaml"]
        image = ["--config-file", "configs/image/pretrain_rq.yaml"]
        video = ["--config-file", "configs/video/pretrain_rq.yaml"]
        bs, img_bs, vid_bs = "32", "64", "16"
        it = ["--iters", "10", "--warmup", "3"]
        comp = ["--compile"]
        compile_cost = 90
    steps = [("encoder_phase", audio), ("tokenizer_phase", audio), ("finetune_step", audio + ft)]
    out = [("matmul_peak", ["--component", "matmul_peak"] + it, 10)]
    for prec in ("bf16", "fp16"):
        for c, cfg in steps:
            out.append(
                (f"audio {c} {prec} eager", ["--component", c, "--precision", prec, "--batch-size", bs] + cfg + it, 20)
            )
    out += [
        (
            "image encoder_phase bf16 eager",
            ["--component", "encoder_phase", "--precision", "bf16", "--batch-size", img_bs] + image + it,
            20,
        ),
        (
            "image tokenizer_phase bf16 eager",
            ["--component", "tokenizer_phase", "--precision", "bf16", "--batch-size", img_bs] + image + it,
            20,
        ),
        (
            "video encoder_phase bf16 eager",
            ["--component", "encoder_phase", "--precision", "bf16", "--batch-size", vid_bs] + video + it,
            25,
        ),
        (
            "fbank device vs cpu",
            [
                "--component",
                "fbank",
                "--component",
                "audio_decode_fbank",
                "--component",
                "device_fbank",
                "--batch-size",
                bs,
                "--threads",
                "1",
            ]
            + it,
            20,
        ),
    ]
    for c, cfg in steps:
        out.append(
            (
                f"audio {c} bf16 compile",
                ["--component", c, "--precision", "bf16", "--batch-size", bs] + comp + cfg + it,
                compile_cost,
            )
        )
    extra = ["--precision", "bf16", "--batch-size", bs, "--no-flops"] + audio + it
    out += [
        (
            "audio encoder_phase bf16 eager foreach AdamW",
            ["--component", "encoder_phase"] + extra + ["--opts", "SOLVER.OPTIMIZER_IMPL", "foreach"],
            15,
        ),
        (
            "audio encoder_phase bf16 eager grad checkpoint",
            ["--component", "encoder_phase"] + extra + ["--opts", "MODEL.ENCODER.GRAD_CHECKPOINT", "True"],
            15,
        ),
        (
            "audio tokenizer_phase bf16 eager teacher fp32",
            ["--component", "tokenizer_phase"] + extra + ["--opts", "PRETRAIN.TEACHER_PRECISION", "fp32"],
            15,
        ),
    ]
    for c, cfg in steps:
        out.append(
            (
                f"audio {c} fp16 compile",
                ["--component", c, "--precision", "fp16", "--batch-size", bs] + comp + cfg + it,
                compile_cost,
            )
        )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (the check) or cpu (smoke mode)")
    ap.add_argument(
        "--budget-s",
        type=float,
        default=420.0,
        help="start no measurement that would end (by its estimate) after this many seconds",
    )
    ap.add_argument("--out", default="", help="JSON path (default $OUT/gpu_check.json or benchmarks/out/)")
    ap.add_argument("--only", default="", help="run only measurements whose label contains this")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    smoke = not args.device.startswith("cuda")
    if not smoke and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available; use --device cpu for the smoke mode", file=sys.stderr)
        return 2
    out_dir = os.environ.get("OUT") or os.path.join(ROOT, "benchmarks", "out")
    path = args.out or os.path.join(out_dir, "gpu_check.json" if not smoke else "gpu_check_smoke.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": args.device,
        "smoke": smoke,
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        import subprocess

        env["commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except Exception:  # a copy of the tree without .git
        env["commit"] = ""
    if not smoke:
        env["gpu"] = torch.cuda.get_device_name(0)
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 parts stay fp32
    report = {"environment": env, "rows": [], "errors": [], "skipped": []}

    def save():
        report["elapsed_s"] = round(time.perf_counter() - t0, 1)
        with open(path, "w") as f:
            json.dump(report, f, indent=1)

    peak = 0.0
    for label, bargs, cost in plan(smoke):
        if args.only and args.only not in label and label != "matmul_peak":
            continue
        elapsed = time.perf_counter() - t0
        if elapsed + cost > args.budget_s:
            report["skipped"].append({"label": label, "reason": f"budget ({elapsed:.0f}+{cost}>{args.budget_s:.0f} s)"})
            print(f"[{elapsed:6.1f}s] skip  {label} (budget)", flush=True)
            continue
        full = bargs + ["--device", args.device] + (["--peak-tflops", str(peak)] if peak > 0 else [])
        start = time.perf_counter()
        try:
            ns = B.build_parser().parse_args(full)
            threads = torch.get_num_threads()
            if ns.threads > 0:  # per-core CPU figures
                torch.set_num_threads(ns.threads)
            rows = []
            try:
                rows = B.run_components(ns.component, ns)
            finally:
                torch.set_num_threads(threads)
            for r in rows:
                r["label"] = label
                r["wall_s"] = round(time.perf_counter() - start, 1)
            report["rows"] += rows
            if label == "matmul_peak":
                peak = max(float(r.get("tflops", 0)) for r in rows if r.get("precision") == "bfloat16")
                report["environment"]["bf16_matmul_peak_tflops"] = peak
            brief = "; ".join(
                f"{r.get('component')} {r.get('samples_per_s', r.get('tflops', r.get('clips_per_s', '')))}"
                for r in rows
            )
            print(f"[{time.perf_counter() - t0:6.1f}s] ok    {label}: {brief}", flush=True)
        except (Exception, SystemExit) as e:  # one failure (an argparse refusal too) must not lose the rest
            report["errors"].append(
                {
                    "label": label,
                    "error": f"{type(e).__name__}: {e}"[:2000],
                    "traceback": traceback.format_exc()[-3000:],
                }
            )
            print(f"[{time.perf_counter() - t0:6.1f}s] FAIL  {label}: {type(e).__name__}: {str(e)[:300]}", flush=True)
        finally:
            if not smoke:
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
            torch._dynamo.reset()
            save()
    print(B.format_table([{k: v for k, v in r.items() if k not in ("label", "reasons")} for r in report["rows"]]))
    print(
        f"wrote {path} ({len(report['rows'])} rows, {len(report['errors'])} errors, "
        f"{len(report['skipped'])} skipped, {time.perf_counter() - t0:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
