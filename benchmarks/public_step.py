#!/usr/bin/env python
"""Time one training step of the PUBLIC BRIDLE code (github:HoangNguyenM/bridle) on synthetic
inputs, built exactly like its audio pretraining scripts (submit_pt_encoder.sh /
submit_pt_token.sh: ViT-B, 1024x128 fbank, swin decoder mode 1, estimator mode 2, RQ 4x256,
EMA, soft_code 2 + k-means + restart for the cold-start encoder phase), for a side-by-side
ratio with ``tools/benchmark.py --component encoder_phase/tokenizer_phase``.

The public code is NOT part of this repository: export it to a directory first and point
``--public-root`` at it (it is imported from there at run time, never copied; when the root is
not on PYTHONPATH already, the script runs itself again with it there):

    git -C <mirror of HoangNguyenM/bridle> archive HEAD | tar -x -C /tmp/pub
    OMP_NUM_THREADS=1 python benchmarks/public_step.py --public-root /tmp/pub --phase tokenizer \
        --batch-size 2 --iters 3 --warmup 1

Its step is reproduced from its ``unit_pretrain.train_one_epoch``: autocast(fp32|fp16), forward,
``loss.item()`` (the public loop's host sync), its NativeScalerWithGradNormCount (backward,
unscale, grad norm, AdamW step with timm's weight-decay groups), zero_grad.
"""

import argparse
import json
import os
import sys
import time

import torch


def with_public_root_importable(root: str, argv) -> None:
    """Run this script again with ``root`` on PYTHONPATH unless it is importable already: the
    public code imports its packages (``model``, ``util``) as top-level names."""
    root = os.path.abspath(root)
    if root in (os.path.abspath(p) for p in sys.path if p):
        return
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p))
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + list(argv), env)


def build(phase: str, device: torch.device):
    import numpy as np

    if not hasattr(np, "float"):  # its pos-embed code uses the alias NumPy 1.24 removed
        np.float = float
    import model.encoder_decoder as ed
    import model.tokenizer as tk
    import timm.optim._param_groups as pg  # the public code uses optim_factory.param_groups_weight_decay
    from model.bridle import BRIDLE
    from util.misc import NativeScalerWithGradNormCount

    cold = phase == "encoder"
    soft_code = 2 if cold else 1
    num_tokens = 256 * 4 * soft_code
    enc = ed.vit_b(
        in_chans=1,
        audio_exp=True,
        img_size=(1024, 128),
        mode=0,
        pos_trainable=False,
        decoder_mode=1,
        mask_2d=False,
        mask_t_prob=0.7,
        mask_f_prob=0.3,
        num_tokens=num_tokens,
        no_shift=False,
    )
    tok = tk.vit_b(
        in_chans=1,
        audio_exp=True,
        img_size=(1024, 128),
        mode=0,
        pos_trainable=False,
        estimator_mode=2,
        codebook_type="rq",
        code_num=256,
        code_dim=256,
        codebook_set=4,
        commitment_loss_weight=0.25,
        ema=True,
        restart_unused_codes=cold,
        init_weight_multiplier=1.0,
        kmeans_init=cold,
        soft_code=soft_code,
        no_shift=False,
    )
    model = BRIDLE(
        encoder_decoder=enc,
        tokenizer=tok,
        model_loss=torch.nn.CrossEntropyLoss(),
        cold_start=cold,
        train_encoder=cold,
        codebook_type="rq",
    ).to(device)
    groups = pg.param_groups_weight_decay(model, 1e-4)
    optimizer = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.95))
    return model, optimizer, NativeScalerWithGradNormCount()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--public-root", default="/tmp/pub")
    ap.add_argument("--phase", choices=["encoder", "tokenizer"], default="tokenizer")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--precision", choices=["fp32", "fp16"], default="fp32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json", default="")
    ap.add_argument(
        "--clock",
        choices=["wall", "process"],
        default="wall",
        help="wall time or this process's CPU time (as tools/benchmark.py --clock)",
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(argv)
    with_public_root_importable(args.public_root, argv)
    device = torch.device(args.device)
    if not torch.distributed.is_initialized():  # its quantizer all_reduces unconditionally
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
        torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    torch.manual_seed(0)
    model, optimizer, scaler = build(args.phase, device)
    model.train(True)
    if args.phase == "encoder":
        model.encoder_decoder.train(True)
        model.tokenizer.train(False)
    else:
        model.encoder_decoder.train(False)
        model.tokenizer.train(True)
    x = torch.randn(args.batch_size, 1, 1024, 128, device=device)
    dtype = {"fp32": torch.float32, "fp16": torch.float16}[args.precision]

    def step():
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=args.precision != "fp32"):
            loss = model(x, mask_ratio=0.8)
        loss.item()
        scaler(loss, optimizer, parameters=model.parameters(), update_grad=True)
        optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    clock = time.process_time if args.clock == "process" else time.perf_counter
    times = []
    for _ in range(args.iters):
        t = clock()
        step()
        times.append(clock() - t)
    times.sort()
    sec = times[len(times) // 2]
    row = {
        "component": f"public_{args.phase}_phase",
        "precision": args.precision,
        "batch": args.batch_size,
        "ms": round(sec * 1e3, 2),
        "samples_per_s": round(args.batch_size / sec, 2),
        "times_s": [round(t, 3) for t in times],
        "threads": torch.get_num_threads(),
        "clock": args.clock,
    }
    print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(row, f, indent=1)
    return row


if __name__ == "__main__":
    main()
