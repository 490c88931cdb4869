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


#: The clock of time_fn: wall time, or this process's CPU time (``--clock process``: on a CPU
#: shared with other jobs, a single-threaded run's CPU time does not count time spent waiting).
CLOCK: Callable[[], float] = time.perf_counter


def time_fn(fn: Callable[[], object], device: torch.device, iters: int, warmup: int) -> float:
    """Median seconds per call of ``fn`` over ``iters`` timed calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        start = CLOCK()
        fn()
        _sync(device)
        times.append(CLOCK() - start)
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
    g.add_argument("--compile-backend", default="inductor", help="torch.compile backend (aot_eager: no codegen)")
    g.add_argument("--compile-mode", default=None, help="torch.compile mode (default, max-autotune-no-cudagraphs, ...)")
    g.add_argument("--no-flops", action="store_true", help="skip the FLOP count (FlopCounterMode)")


def _bench_phase(args: argparse.Namespace, phase: str, cold: bool) -> List[Row]:
    """One full training step (forward, backward, fused AdamW) of a BRIDLE phase on synthetic
    inputs: samples/s, step time, FLOPs per sample (FlopCounterMode), achieved TFLOP/s, memory."""
    from bridle.config import get_cfg
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


def time_training_step(args: argparse.Namespace, model: torch.nn.Module, batch: dict, optimizer,
                       component_name: str) -> List[Row]:
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
    start = time.perf_counter()
    trainer.run_step()  # the first step (compilation, allocator warm-up) is timed apart
    _sync(device)
    first_s = time.perf_counter() - start
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
    """torch._dynamo.explain of the training forward of each BRIDLE phase and fine-tuning:
    graphs, graph breaks and their first reasons (what torch.compile cannot capture)."""
    from bridle.config import get_cfg
    from bridle.modeling.bridle_model import BridleModel
    from bridle.registry import META_ARCH

    device = torch.device(args.device)
    rows: List[Row] = []
    for phase, cold in (("encoder", True), ("tokenizer", False), ("encoder", False), ("finetune", False)):
        cfg = get_cfg()
        cfg.merge_from_file(args.finetune_config if phase == "finetune" else args.config_file)
        cfg.merge_from_list(list(args.opts))
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
            if phase == "tokenizer":
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
        rows.append({"component": "graph_breaks", "name": phase + ("_cold" if cold else ""),
                     "graphs": ex.graph_count, "graph_breaks": ex.graph_break_count,
                     "ops": ex.op_count, "reasons": " | ".join(dict.fromkeys(reasons))[:600]})
    torch._dynamo.reset()
    return rows


def _finetune_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("finetune_step")
    g.add_argument("--finetune-config", default="configs/audio/finetune_as2m.yaml", help="fine-tune config")


@component("finetune_step", add_args=_finetune_args)
def bench_finetune_step(args: argparse.Namespace) -> List[Row]:
    """Fine-tuning step (EncoderClassifier, layer-wise lr decay AdamW, random labels)."""
    from bridle.config import get_cfg
    from bridle.registry import META_ARCH
    from bridle.solver import build_optimizer
    from bridle.solver.build import param_groups

    cfg = get_cfg()
    cfg.merge_from_file(args.finetune_config)
    cfg.merge_from_list(list(args.opts))
    cfg.SOLVER.PRECISION = args.precision
    device = torch.device(args.device)
    torch.manual_seed(0)
    name = getattr(cfg.MODEL, "DOWNSTREAM_ARCHITECTURE", "EncoderClassifier")
    model = META_ARCH.get(name)(cfg).to(device).train()
    groups = param_groups(model, cfg.SOLVER.WEIGHT_DECAY, layer_id_fn=model.layer_id,
                          num_layers=model.num_layers, layer_decay=float(cfg.SOLVER.LAYER_DECAY))
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
    g.add_argument("--peak-tflops", type=float, default=0.0,
                   help="bf16 matmul peak for the MFU column (0 = no MFU; matmul_peak measures it)")
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
        rows.append({"component": "matmul_peak", "name": f"{n}x{n}", "precision": str(dtype).split(".")[-1],
                     "ms": round(sec * 1e3, 3), "tflops": round(2 * n**3 / sec / 1e12, 1)})
    return rows


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


@component("device_fbank")
def bench_device_fbank(args: argparse.Namespace) -> List[Row]:
    """Batched Kaldi-compatible fbank + pad/crop + normalisation (audio_device_fbank) of
    ``--batch-size`` 10-s 16 kHz clips on ``--device``: clips/s."""
    from bridle.config import get_cfg
    from bridle_audio.device_fbank import DeviceFbank

    device = torch.device(args.device)
    cfg = get_cfg()
    transform = DeviceFbank(cfg, "pretrain")
    n = int(getattr(args, "batch_size", 32) or 32)
    waves = torch.randn(n, 160000, device=device) * 0.1
    lengths = torch.full((n,), 160000, device=device)

    def run():
        transform({"input": waves, "num_samples": lengths})

    sec = time_fn(run, device, args.iters, args.warmup)
    return [{"component": "device_fbank", "name": f"{n} x 10 s clips", "ms": round(sec * 1e3, 2),
             "clips_per_s": round(n / sec, 1), "threads": torch.get_num_threads(), "device": str(device)}]


@component("audio_decode_fbank")
def bench_audio_decode_fbank(args: argparse.Namespace) -> List[Row]:
    """What a loader worker does per clip on the CPU: decode a 10-s wav (soundfile), resample
    (44.1 -> 16 kHz and 16 kHz as is) and fbank (CPU path) vs decode + resample only (the
    FBANK_ON_DEVICE path): clips/s on this process."""
    import tempfile

    import numpy as np
    import soundfile as sf
    from bridle_audio.features import FbankParams, compute_fbank, load_waveform

    params = FbankParams()
    rows: List[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rate in (16000, 44100):
            path = os.path.join(tmp, f"clip_{rate}.wav")
            rng = np.random.default_rng(0)
            sf.write(path, (rng.standard_normal(rate * 10) * 0.1).astype(np.float32), rate, subtype="PCM_16")
            for what, fn in (
                ("decode+resample+fbank", lambda: compute_fbank(load_waveform(path, 16000), params)),
                ("decode+resample", lambda: load_waveform(path, 16000)),
            ):
                sec = time_fn(fn, torch.device("cpu"), args.iters, args.warmup)
                rows.append({"component": "audio_decode_fbank", "name": f"10 s wav @ {rate} Hz: {what}",
                             "ms": round(sec * 1e3, 2), "clips_per_s": round(1 / sec, 1),
                             "threads": torch.get_num_threads()})
    return rows


# ----------------------------------------------------------------------------- loader (H5)
def _loader_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("loader")
    g.add_argument("--loader-samples", type=int, default=64, help="clips / images written and read (default 64)")
    g.add_argument("--loader-pipelines", nargs="+", default=["audio", "image"], choices=["audio", "image"])
    g.add_argument("--loader-dir", default="", help="where the test data is written (default: a temp dir)")


def _loader_data(kind: str, root: str, n: int):
    """``n`` AudioSet-like clips (10 s, 16 kHz PCM_16 wav) or ImageNet-like images (500 x 375
    JPEG, q 90) in one-file-per-sample layout, and the same as FLAC/JPEG shards."""
    import json as _json

    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import make_shards

    rng = np.random.default_rng(0)
    if kind == "audio":
        import soundfile as sf

        os.makedirs(os.path.join(root, "audio"), exist_ok=True)
        t = np.arange(160000) / 16000.0
        entries = []
        for i in range(n):  # tones + noise: compresses like real audio, unlike white noise
            x = 0.2 * np.sin(2 * np.pi * (200 + 37 * i) * t * (1 + 0.1 * np.sin(t))) + 0.02 * rng.standard_normal(t.size)
            sf.write(os.path.join(root, "audio", f"{i:05d}.wav"), x.astype(np.float32), 16000, subtype="PCM_16")
            entries.append({"wav": f"audio/{i:05d}.wav", "labels": "/m/x"})
        with open(os.path.join(root, "train.json"), "w") as f:
            _json.dump({"data": entries}, f)
        with open(os.path.join(root, "labels.csv"), "w") as f:
            f.write("index,mid,display_name\n0,/m/x,X\n")
        for fmt, sub in (("keep", "shards_wav"), ("flac", "shards")):
            index = make_shards.main(["--manifest", os.path.join(root, "train.json"), "--label-csv",
                                      os.path.join(root, "labels.csv"), "--out", os.path.join(root, sub),
                                      "--num-workers", "1", "--shard-size", str(max(1, n // 4)),
                                      "--audio-format", fmt])
    else:
        from PIL import Image

        for i in range(n):
            d = os.path.join(root, "train", f"c{i % 4}")
            os.makedirs(d, exist_ok=True)
            yy, xx = np.mgrid[0:375, 0:500]
            img = np.stack([(xx * (i + 1)) % 256, (yy * 3 + i) % 256, (xx + yy) % 256], -1).astype(np.uint8)
            img = (img + rng.integers(0, 20, img.shape)).clip(0, 255).astype(np.uint8)
            Image.fromarray(img).save(os.path.join(d, f"{i:05d}.jpg"), quality=90)
        index = make_shards.main(["--image-folder", os.path.join(root, "train"), "--out",
                                  os.path.join(root, "shards"), "--num-workers", "1",
                                  "--shard-size", str(max(1, n // 4))])
    return index


@component("loader", add_args=_loader_args)
def bench_loader(args: argparse.Namespace) -> List[Row]:
    """Samples/s of ONE loader worker (this process, pretraining mode: decode + features +
    transform) for one-file-per-sample datasets ("audioset_manifest" / "image_folder") vs the
    "shards" dataset on the same data (FLAC / JPEG in WebDataset tars). Files are on the local
    disk and in the page cache after writing, so this measures decode/transform cost, not the
    metadata cost of a cluster file system (where shards win)."""
    import tempfile

    from bridle.config import get_cfg
    from bridle.data.build import build_dataset

    n = int(args.loader_samples)
    rows: List[Row] = []
    recipes = {"audio": "configs/audio/pretrain_rq.yaml", "image": "configs/image/pretrain_rq.yaml"}
    with tempfile.TemporaryDirectory(dir=args.loader_dir or None) as tmp:
        for kind in args.loader_pipelines:
            root = os.path.join(tmp, kind)
            index = _loader_data(kind, root, n)

            def tar_bytes(sub):
                return sum(os.path.getsize(os.path.join(root, sub, f))
                           for f in os.listdir(os.path.join(root, sub)) if f.endswith(".tar"))

            cfg = get_cfg()
            cfg.merge_from_file(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                             recipes[kind]))
            cfg.merge_from_list(["DATASETS.SHARDS.TRAIN_INDEX", index, "DATASETS.SHARDS.SHUFFLE_BUFFER", "16"])
            if kind == "audio":
                cfg.merge_from_list(["DATASETS.AUDIO.TRAIN_MANIFEST", os.path.join(root, "train.json"),
                                     "DATASETS.AUDIO.LABEL_CSV", os.path.join(root, "labels.csv")])
                files = build_dataset(cfg, "audioset_manifest", "train", "pretrain")
            else:
                cfg.merge_from_list(["DATASETS.IMAGE.ROOT", root])
                files = build_dataset(cfg, "image_folder", "train", "pretrain")
            layouts = [("shards (FLAC)" if kind == "audio" else "shards (JPEG)", "shards")]
            if kind == "audio":
                layouts.append(("shards (wav bytes kept)", "shards_wav"))

            def read_files():
                for i in range(n):
                    files[i]

            def reader(sub):
                c = cfg.clone()
                c.merge_from_list(["DATASETS.SHARDS.TRAIN_INDEX", os.path.join(root, sub, "index.json")])
                shards = build_dataset(c, "shards", "train", "pretrain")
                shards.set_start(0, 1)

                def read_shards():
                    it = iter(shards)
                    for _ in range(n):
                        next(it)

                return read_shards

            file_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root)
                             for f in fs if f.endswith((".wav", ".jpg")) and "shards" not in d)
            runs = [("one file per sample", read_files, file_bytes)]
            runs += [(name, reader(sub), tar_bytes(sub)) for name, sub in layouts]
            # interleaved (files, shards, files, ...) so that load drifts on a shared machine hit
            # every layout alike; median of --iters passes each
            for _, fn, _ in runs:
                for _ in range(args.warmup):
                    fn()
            times = {layout: [] for layout, _, _ in runs}
            for _ in range(args.iters):
                for layout, fn, _ in runs:
                    start = CLOCK()
                    fn()
                    times[layout].append(CLOCK() - start)
            for layout, fn, size in runs:
                sec = sorted(times[layout])[len(times[layout]) // 2]
                rows.append({"component": "loader", "name": f"{kind}: {layout}", "samples": n,
                             "samples_per_s": round(n / sec, 1), "ms_per_sample": round(sec * 1e3 / n, 2),
                             "MB_on_disk": round(size / 2**20, 1), "threads": torch.get_num_threads()})
    return rows


def _video_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("video_clips")
    g.add_argument("--video-config", default="configs/video/pretrain_rq.yaml", help="video config")
    g.add_argument("--video-seconds", type=float, default=10.0, help="length of the synthetic 25-fps clip")


@component("video_clips", add_args=_video_args)
def bench_video_clips(args: argparse.Namespace) -> List[Row]:
    """Video loader worker: clips/s of the pretraining dataset (decord decode + transform) on a
    synthetic H.264 320x256 25-fps video, for INPUT.VIDEO.NUM_SAMPLE (clips per decode) 1 / 2 / 4
    and DECODE_THREADS 1 / 2, in this process (= one loader worker)."""
    import tempfile

    import av
    import numpy as np

    from bridle.config import get_cfg
    from bridle.registry import DATASET

    rows: List[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "clips"))
        path = os.path.join(tmp, "clips", "synthetic.mp4")
        rng = np.random.default_rng(0)
        base = rng.integers(0, 255, (256 + 64, 320 + 64, 3), dtype=np.uint8)
        with av.open(path, mode="w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.height, stream.width, stream.pix_fmt = 256, 320, "yuv420p"
            for i in range(int(args.video_seconds * 25)):
                frame = base[i % 64: i % 64 + 256, i % 64: i % 64 + 320]  # a moving pan
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
            container.mux(stream.encode())
        for threads in (1, 2):
            for per_decode in (1, 2, 4):
                cfg = get_cfg()
                cfg.merge_from_file(args.video_config)
                cfg.DATASETS.VIDEO.FOLDER_ROOT = os.path.join(tmp, "clips")
                cfg.INPUT.VIDEO.NUM_SAMPLE = per_decode
                cfg.INPUT.VIDEO.DECODE_THREADS = threads
                ds = DATASET.get("video_folder")(cfg, "train", "pretrain")
                sec = time_fn(lambda: ds[0], torch.device("cpu"), args.iters, args.warmup)
                rows.append({"component": "video_clips", "name": f"NUM_SAMPLE {per_decode}, DECODE_THREADS {threads}",
                             "ms": round(sec * 1e3, 1), "clips_per_s": round(per_decode / sec, 1),
                             "threads": torch.get_num_threads()})
    return rows


# ----------------------------------------------------------------------------- driver
def environment(args: argparse.Namespace) -> Dict[str, object]:
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": args.device,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "clock": getattr(args, "clock", "wall"),
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
    parser.add_argument("--clock", choices=["wall", "process"], default="wall",
                        help="wall time (default) or this process's CPU time (CPU runs on a shared machine)")
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
    global CLOCK
    CLOCK = time.process_time if args.clock == "process" else time.perf_counter
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
