"""The modality-free components: the quantizer, one training step of each BRIDLE phase and of
fine-tuning (any config: the model input is synthetic, of the config's MODEL.PATCH_EMBED shape),
torch.compile graph breaks and the matmul peak that MFU is measured against."""

import argparse
import os
import time
from typing import List

import torch

from .core import Row, component, cpu_seconds, sync, time_fn


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
        sync(device)
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
    g.add_argument("--config-file", default="", help="model config")
    g.add_argument("--opts", nargs="*", default=[], help="KEY VALUE config overrides")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--compile-backend", default="inductor", help="torch.compile backend (aot_eager: no codegen)")
    g.add_argument("--compile-mode", default=None, help="torch.compile mode (default, max-autotune-no-cudagraphs, ...)")
    g.add_argument("--no-flops", action="store_true", help="skip the FLOP count (FlopCounterMode)")


def run_config(config_file: str, opts, flag: str):
    """Defaults, ``config_file``, then the ``KEY VALUE`` ``opts``; left unfrozen (the components
    set the batch size and precision). An empty path is refused: the model is the config's."""
    from bridle.config import load_config

    if not config_file:
        raise ValueError(f"this component needs {flag} (a model config)")
    return load_config(config_file, list(opts), freeze=False, file_key=flag)


def _bench_phase(args: argparse.Namespace, phase: str, cold: bool) -> List[Row]:
    """One full training step (forward, backward, fused AdamW) of a BRIDLE phase on synthetic
    inputs: samples/s, step time, FLOPs per sample (FlopCounterMode), achieved TFLOP/s, memory."""
    from bridle.modeling.bridle_model import BridleModel
    from bridle.solver import build_optimizer

    cfg = run_config(args.config_file, args.opts, "--config-file")
    cfg.MODEL.TOKENIZER.COLD_START = cold
    cfg.SOLVER.BATCH_SIZE_PER_GPU = args.batch_size
    cfg.SOLVER.PRECISION = args.precision
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = BridleModel(cfg, phase).to(device).train()
    x = synthetic_input(cfg, args.batch_size, device)
    model.init_tokenizer_codebooks(x)
    if phase == "tokenizer":  # a training quantizer initialises itself on its first batch
        with torch.no_grad():
            model.tokenizer.quantizer.init_codebook(model.tokenizer.features(x).float())
    optimizer = build_optimizer(cfg, model)
    return time_training_step(args, model, {"input": x}, optimizer, f"{phase}_phase" + ("_cold" if cold else ""))


def synthetic_input(cfg, batch_size: int, device: torch.device) -> torch.Tensor:
    """A random model input of the config's MODEL.PATCH_EMBED shape (no channel dim if 1)."""
    p = cfg.MODEL.PATCH_EMBED
    shape = [batch_size] + ([] if p.IN_CHANS == 1 else [p.IN_CHANS]) + list(p.INPUT_SIZE)
    return torch.randn(*shape, device=device)


def time_training_step(
    args: argparse.Namespace, model: torch.nn.Module, batch: dict, optimizer, component_name: str
) -> List[Row]:
    """Time ``SimpleTrainer.run_step`` (autocast, backward, optimizer step) on a fixed
    device-resident batch; count FLOPs of one step; report memory and MFU (``--peak-tflops``)."""
    from torch.utils.flop_counter import FlopCounterMode

    from bridle.engine.events import EventStorage
    from bridle.engine.train_loop import SimpleTrainer

    device = torch.device(args.device)
    if getattr(args, "compile", False):
        torch._dynamo.reset()
    if getattr(args, "compile", False):
        runnable = torch.compile(model, backend=args.compile_backend, mode=args.compile_mode)
    else:
        runnable = model
    trainer = SimpleTrainer(runnable, RepeatLoader(batch), optimizer, precision=args.precision, device=device)
    trainer.storage = EventStorage()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    start, cpu_start = time.perf_counter(), cpu_seconds()
    trainer.run_step()  # the first step (compilation, allocator warm-up) is timed apart
    sync(device)
    first_s = time.perf_counter() - start
    first_cpu_s = cpu_seconds() - cpu_start
    sec = time_fn(trainer.run_step, device, args.iters, max(0, args.warmup - 1))
    trainer.storage.flush()
    flops = 0.0
    if not getattr(args, "no_flops", False):
        counted = model  # FLOPs of the eager model: the same math, countable op by op
        trainer.model = counted
        with FlopCounterMode(display=False) as counter:
            trainer.run_step()
        trainer.model = runnable
        flops = counter.get_total_flops() / args.batch_size
    trained = sum(q.numel() for q in model.parameters() if q.requires_grad)
    tflops = flops * args.batch_size / sec / 1e12
    row: Row = {
        "component": component_name,
        "name": os.path.basename(args.config_file),
        "precision": args.precision,
        "compile": bool(getattr(args, "compile", False)),
        "batch": args.batch_size,
        "ms": round(sec * 1e3, 2),
        "samples_per_s": round(args.batch_size / sec, 1),
        "first_step_s": round(first_s, 2),
        "first_step_cpu_s": round(first_cpu_s, 2),
        "gflop_per_sample": round(flops / 1e9, 2),
        "achieved_tflops": round(tflops, 3),
        "trained_params_m": round(trained / 1e6, 2),
    }
    peak = float(getattr(args, "peak_tflops", 0.0) or 0.0)
    if peak > 0 and flops > 0:
        row["mfu"] = round(tflops / peak, 4)
    if device.type == "cuda":
        row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return [row]


class RepeatLoader:
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


@component("encoder_phase_iter2")
def bench_encoder_phase_iter2(args: argparse.Namespace) -> List[Row]:
    """BRIDLE encoder phase of iteration >= 2: targets from a (ViT) tokenizer over all patches,
    run in MODEL.TOKENIZER.TARGET_PRECISION (fp32 by default; "amp" = the step's autocast)."""
    return _bench_phase(args, "encoder", cold=False)


@component("tokenizer_phase")
def bench_tokenizer_phase(args: argparse.Namespace) -> List[Row]:
    """BRIDLE tokenizer phase (L_cos + L_cb, frozen encoder teacher) training step."""
    return _bench_phase(args, "tokenizer", cold=False)


@component("graph_breaks")
def bench_graph_breaks(args: argparse.Namespace) -> List[Row]:
    """torch._dynamo.explain of the training forward of each BRIDLE phase and fine-tuning
    (graphs, graph breaks and their first reasons: what torch.compile cannot capture), then
    torch.compile(fullgraph=True) over 3 training forwards: whether it compiles as one graph
    and how many times (the joint phase: twice, with and without its tokenizer step)."""
    from bridle.modeling.bridle_model import BridleModel
    from bridle.registry import META_ARCH

    device = torch.device(args.device)
    rows: List[Row] = []
    phases = (("encoder", True), ("tokenizer", False), ("encoder", False), ("joint", False), ("finetune", False))
    for phase, cold in phases:
        cfg = (
            run_config(args.finetune_config, args.opts, "--finetune-config")
            if phase == "finetune"
            else run_config(args.config_file, args.opts, "--config-file")
        )
        torch.manual_seed(0)
        if phase == "finetune":
            model = META_ARCH.get(getattr(cfg.MODEL, "DOWNSTREAM_ARCHITECTURE", "EncoderClassifier"))(cfg)
            model = model.to(device).train()
            x = synthetic_input(cfg, args.batch_size, device)
            batch = {"input": x, "label": torch.zeros(args.batch_size, int(cfg.MODEL.HEAD.NUM_CLASSES), device=device)}
            if str(cfg.MODEL.HEAD.LOSS) != "bce":
                batch["label"] = torch.zeros(args.batch_size, dtype=torch.long, device=device)
        else:
            cfg.MODEL.TOKENIZER.COLD_START = cold
            model = BridleModel(cfg, phase).to(device).train()
            x = synthetic_input(cfg, args.batch_size, device)
            model.init_tokenizer_codebooks(x)
            if phase in ("tokenizer", "joint"):
                with torch.no_grad():
                    model.tokenizer.quantizer.init_codebook(model.tokenizer.features(x).float())
            batch = {"input": x}
        torch._dynamo.reset()
        ex = torch._dynamo.explain(model)(batch)
        reasons = []
        for b in ex.break_reasons:
            where = b.user_stack[-1] if getattr(b, "user_stack", None) else None
            loc = f" at {os.path.basename(where.filename)}:{where.lineno}" if where is not None else ""
            reasons.append(f"{str(b.reason).splitlines()[0][:120]}{loc}")
        fullgraph, compiles = _fullgraph_compiles(model, batch)
        rows.append(
            {
                "component": "graph_breaks",
                "name": phase + ("_cold" if cold else ""),
                "graphs": ex.graph_count,
                "graph_breaks": ex.graph_break_count,
                "ops": ex.op_count,
                "fullgraph": fullgraph,
                "compiles_in_3_steps": compiles,
                "reasons": " | ".join(dict.fromkeys(reasons))[:600],
            }
        )
    torch._dynamo.reset()
    return rows


def _fullgraph_compiles(model: torch.nn.Module, batch: dict, steps: int = 3):
    """("ok" or the error's first line, compilations) of ``torch.compile(model, fullgraph=True)``
    (Dynamo's capture only: backend "eager") over ``steps`` training forwards at global steps
    0, 1, 2 (models without a global_step ignore it)."""
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter, fullgraph=True)
    try:
        for step in range(steps):
            if hasattr(model, "global_step"):
                model.global_step = step
            compiled(batch)
    except Exception as e:  # a graph break or a recompile limit: fullgraph=True raises
        return f"error: {str(e).strip().splitlines()[0][:200]}", counter.frame_count
    finally:
        torch._dynamo.reset()
    return "ok", counter.frame_count


def _finetune_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("finetune_step")
    g.add_argument("--finetune-config", default="", help="fine-tune config")


@component("finetune_step", add_args=_finetune_args)
def bench_finetune_step(args: argparse.Namespace) -> List[Row]:
    """Fine-tuning step (EncoderClassifier, layer-wise lr decay AdamW, random labels)."""
    from bridle.registry import META_ARCH
    from bridle.solver import build_optimizer
    from bridle.solver.build import param_groups

    cfg = run_config(args.finetune_config, args.opts, "--finetune-config")
    cfg.SOLVER.PRECISION = args.precision
    device = torch.device(args.device)
    torch.manual_seed(0)
    name = getattr(cfg.MODEL, "DOWNSTREAM_ARCHITECTURE", "EncoderClassifier")
    model = META_ARCH.get(name)(cfg).to(device).train()
    groups = param_groups(
        model,
        cfg.SOLVER.WEIGHT_DECAY,
        layer_id_fn=model.layer_id,
        num_layers=model.num_layers,
        layer_decay=float(cfg.SOLVER.LAYER_DECAY),
    )
    optimizer = build_optimizer(cfg, model, groups)
    x = synthetic_input(cfg, args.batch_size, device)
    c = int(cfg.MODEL.HEAD.NUM_CLASSES)
    if str(cfg.MODEL.HEAD.LOSS) == "bce":
        label = (torch.rand(args.batch_size, c, device=device) < 0.02).float()
    else:
        label = torch.randint(c, (args.batch_size,), device=device)
    saved = args.config_file
    args.config_file = args.finetune_config
    try:
        return time_training_step(args, model, {"input": x, "label": label}, optimizer, "finetune_step")
    finally:
        args.config_file = saved


def _peak_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("matmul_peak / MFU")
    g.add_argument(
        "--peak-tflops",
        type=float,
        default=0.0,
        help="bf16 matmul peak for the MFU column (0 = no MFU; matmul_peak measures it)",
    )
    g.add_argument("--matmul-size", type=int, default=8192, help="square matmul size of matmul_peak")


@component("matmul_peak", add_args=_peak_args)
def bench_matmul_peak(args: argparse.Namespace) -> List[Row]:
    """bf16 (and fp16) square-matmul TFLOP/s on this device: the peak MFU is measured against."""
    device = torch.device(args.device)
    n = int(args.matmul_size) if device.type == "cuda" else min(int(args.matmul_size), 1024)
    rows: List[Row] = []
    for dtype in (torch.bfloat16, torch.float16):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        reps = 20 if device.type == "cuda" else 2

        def run():
            for _ in range(reps):
                torch.mm(a, b)

        sec = time_fn(run, device, max(3, args.iters), max(1, args.warmup)) / reps
        rows.append(
            {
                "component": "matmul_peak",
                "name": f"{n}x{n}",
                "precision": str(dtype).split(".")[-1],
                "ms": round(sec * 1e3, 3),
                "tflops": round(2 * n**3 / sec / 1e12, 1),
            }
        )
    return rows
