#!/usr/bin/env python
"""Micro-benchmarks of Bridle components.

    python tools/benchmark.py --component quantizer [--device cpu] [--json out.json]
    python tools/benchmark.py --list

Each component is a function ``bench_<name>(args) -> list[dict]`` registered in
:data:`COMPONENTS` with :func:`component`; every returned row is one measurement and the rows
are printed as a table (and written to ``--json``). Add a component (``encoder_phase``,
``tokenizer_phase``, ``fbank``, ...) by writing such a function; it may add its own options
in an ``add_args(parser)`` attribute. Benchmarks time things; tests never assert wall-clock.
"""
import argparse
import json
import os
import platform
import sys
import time
from typing import Callable, Dict, List

import torch

Row = Dict[str, object]
COMPONENTS: Dict[str, Callable[[argparse.Namespace], List[Row]]] = {}


def component(name: str, add_args: Callable[[argparse.ArgumentParser], None] = None):
    """Register ``fn(args) -> rows`` as the benchmark of ``name`` (``add_args`` adds options)."""

    def deco(fn):
        fn.add_args = add_args
        COMPONENTS[name] = fn
        return fn

    return deco


# ----------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], object], device: torch.device, iters: int, warmup: int) -> float:
    """Median seconds per call of ``fn`` over ``iters`` timed calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


# ----------------------------------------------------------------------------- quantizer
def _quantizer_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("quantizer")
    g.add_argument("--batch-size", type=int, default=32, help="samples per step (default 32)")
    g.add_argument("--tokens", type=int, default=512, help="tokens per sample (default 512)")
    g.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16"],
        default="fp32",
        help="autocast dtype of the surrounding step (the quantizer itself always runs in fp32)",
    )


@component("quantizer", add_args=_quantizer_args)
def bench_quantizer(args: argparse.Namespace) -> List[Row]:
    """Throughput (vectors/s) of RQ 4x256x256 and VQ 1024x256: training forward+backward
    (EMA, usage, restart checks included) and eval forward, on [batch, tokens, 256] inputs."""
    from bridle.modeling.quantizers import ResidualQuantizer, VectorQuantizer

    device = torch.device(args.device)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    shape = (args.batch_size, args.tokens, 256)
    vectors = args.batch_size * args.tokens
    configs = [
        ("rq 4x256x256", lambda: ResidualQuantizer(4, 256, 256)),
        ("vq 1024x256", lambda: VectorQuantizer(1024, 256)),
    ]
    rows: List[Row] = []
    for name, make in configs:
        torch.manual_seed(0)
        q = make().to(device)
        z = torch.randn(*shape, device=device)
        grad = torch.randn(*shape, device=device)
        autocast = torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None)

        start = time.perf_counter()
        q.init_codebook(z)
        _sync(device)
        init_s = time.perf_counter() - start

        def train_step():
            zz = z.detach().requires_grad_(True)
            with autocast:
                out = q(zz)
                loss = out.loss + (out.quantized.float() * grad).sum() / vectors
            loss.backward()

        def eval_step():
            with torch.no_grad(), autocast:
                q(z)

        q.train()
        t_train = time_fn(train_step, device, args.iters, args.warmup)
        q.eval()
        t_eval = time_fn(eval_step, device, args.iters, args.warmup)
        for mode, sec in (("train fwd+bwd", t_train), ("eval fwd", t_eval)):
            rows.append(
                {
                    "component": "quantizer",
                    "name": name,
                    "mode": mode,
                    "vectors": vectors,
                    "ms": round(sec * 1e3, 3),
                    "vectors_per_s": round(vectors / sec, 1),
                    "kmeans_init_s": round(init_s, 3),
                }
            )
    return rows


# ----------------------------------------------------------------------------- training phases
def _phase_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("encoder_phase / tokenizer_phase")
    g.add_argument("--config-file", default="configs/audio/pretrain_rq.yaml", help="model config")
    g.add_argument("--opts", nargs="*", default=[], help="KEY VALUE config overrides")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--no-flops", action="store_true", help="skip the FLOP count (FlopCounterMode)")


def _bench_phase(args: argparse.Namespace, phase: str, cold: bool) -> List[Row]:
    """One full training step (forward, backward, fused AdamW) of a BRIDLE phase on synthetic
    inputs: samples/s, step time, FLOPs per sample (FlopCounterMode), achieved TFLOP/s, memory."""
    from torch.utils.flop_counter import FlopCounterMode

    from bridle.config import get_cfg
    from bridle.engine.events import EventStorage
    from bridle.engine.train_loop import SimpleTrainer
    from bridle.modeling.bridle_model import BridleModel
    from bridle.solver import build_optimizer

    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(list(args.opts))
    cfg.MODEL.TOKENIZER.COLD_START = cold
    cfg.SOLVER.BATCH_SIZE_PER_GPU = args.batch_size
    cfg.SOLVER.PRECISION = args.precision
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = BridleModel(cfg, phase).to(device).train()
    p = cfg.MODEL.PATCH_EMBED
    shape = [args.batch_size] + ([] if p.IN_CHANS == 1 else [p.IN_CHANS]) + list(p.INPUT_SIZE)
    x = torch.randn(*shape, device=device)
    model.init_tokenizer_codebooks(x)
    if phase == "tokenizer":  # a training quantizer initialises itself on its first batch
        with torch.no_grad():
            model.tokenizer.quantizer.init_codebook(model.tokenizer.features(x).float())
    optimizer = build_optimizer(cfg, model)
    runnable = torch.compile(model) if args.compile else model
    batch = {"input": x}
    trainer = SimpleTrainer(runnable, _Repeat(batch), optimizer, precision=args.precision, device=device)
    trainer.storage = EventStorage()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sec = time_fn(trainer.run_step, device, args.iters, args.warmup)
    trainer.storage.flush()
    flops = 0.0
    if not args.no_flops:
        with FlopCounterMode(display=False) as counter:
            trainer.run_step()
        flops = counter.get_total_flops() / args.batch_size
    trained = sum(q.numel() for q in model.parameters() if q.requires_grad)
    row: Row = {
        "component": f"{phase}_phase" + ("_cold" if cold else ""),
        "name": os.path.basename(args.config_file),
        "precision": args.precision,
        "batch": args.batch_size,
        "ms": round(sec * 1e3, 2),
        "samples_per_s": round(args.batch_size / sec, 1),
        "gflop_per_sample": round(flops / 1e9, 2),
        "achieved_tflops": round(flops * args.batch_size / sec / 1e12, 2),
        "trained_params_m": round(trained / 1e6, 2),
    }
    if device.type == "cuda":
        row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return [row]


class _Repeat:
    """A loader that yields the same (device-resident) batch forever: no input pipeline cost."""

    def __init__(self, batch):
        self.batch = batch

    def __iter__(self):
        while True:
            yield dict(self.batch)


@component("encoder_phase", add_args=_phase_args)
def bench_encoder_phase(args: argparse.Namespace) -> List[Row]:
    """BRIDLE encoder phase (cold-start tokenizer targets, masked CE) training step."""
    return _bench_phase(args, "encoder", cold=True)


@component("tokenizer_phase")
def bench_tokenizer_phase(args: argparse.Namespace) -> List[Row]:
    """BRIDLE tokenizer phase (L_cos + L_cb, frozen encoder teacher) training step."""
    return _bench_phase(args, "tokenizer", cold=False)


@component("fbank")
def bench_fbank(args: argparse.Namespace) -> List[Row]:
    """Kaldi fbank (128 mel bins, 25/10 ms) of 10-s 16 kHz clips, clips/s on this process."""
    from torchaudio.compliance import kaldi

    wave = torch.randn(1, 160000)

    def run():
        kaldi.fbank(wave - wave.mean(), htk_compat=True, sample_frequency=16000, use_energy=False,
                    window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)

    sec = time_fn(run, torch.device("cpu"), args.iters, args.warmup)
    return [{"component": "fbank", "name": "10 s clip", "ms": round(sec * 1e3, 2),
             "clips_per_s": round(1 / sec, 1), "threads": torch.get_num_threads()}]


# ----------------------------------------------------------------------------- driver
def environment(args: argparse.Namespace) -> Dict[str, object]:
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": args.device,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    if args.device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    return env


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def format_table(rows: List[Row]) -> str:
    if not rows:
        return "(no rows)"
    cols = list(rows[0].keys())
    for r in rows[1:]:
        cols += [c for c in r if c not in cols]
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    for row in cells:
        out.append("  ".join(v.rjust(w) if _is_number(v) else v.ljust(w) for v, w in zip(row, widths)))
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--component", action="append", choices=sorted(COMPONENTS), help="repeatable")
    parser.add_argument("--list", action="store_true", help="list the components and exit")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    parser.add_argument("--json", default="", help="also write the rows and the environment here")
    for fn in COMPONENTS.values():
        if fn.add_args is not None:
            fn.add_args(parser)
    return parser


def main(argv=None) -> List[Row]:
    args = build_parser().parse_args(argv)
    if args.list:
        for name, fn in sorted(COMPONENTS.items()):
            print(f"{name:<20} {(fn.__doc__ or '').strip().splitlines()[0]}")
        return []
    if not args.component:
        build_parser().error(f"--component is required (one of {', '.join(sorted(COMPONENTS))})")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rows: List[Row] = []
    for name in args.component:
        rows += COMPONENTS[name](args)
    env = environment(args)
    print(" ".join(f"{k}={v}" for k, v in env.items()))
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "rows": rows}, f, indent=1)
        print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
