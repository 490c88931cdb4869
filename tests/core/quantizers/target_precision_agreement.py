#!/usr/bin/env python
"""How many target codes change when the targets are computed under bf16 autocast
(MODEL.TOKENIZER.TARGET_PRECISION "amp") instead of fp32 (the default)?

Builds the encoder-phase model of a config (default: the audio recipe, ViT-B, RQ 4 x 256 x 256,
LOOKUP unit), initialises the codebooks in fp32 on one batch of smooth random inputs, then
codes other batches both ways and prints the per-level agreement. ``--cold`` uses the
cold-start tokenizer (iteration 1); without it the (randomly initialised) ViT tokenizer.

    OMP_NUM_THREADS=1 .venv/bin/python tests/core/quantizers/target_precision_agreement.py --cold
"""

import argparse

import torch
import torch.nn.functional as F


def smooth_input(shape, seed):
    g = torch.Generator().manual_seed(seed)
    b, h, w = shape[0], shape[-2], shape[-1]
    low = torch.randn(b, 1, max(1, h // 8), max(1, w // 8), generator=g)
    x = 0.5 * F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    x = x + 0.15 * torch.randn(b, 1, h, w, generator=g)
    return x.reshape(shape)


def main(argv=None):
    from bridle.config import get_cfg
    from bridle.modeling.bridle_model import BridleModel

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default="configs/audio/pretrain_rq.yaml")
    p.add_argument("--cold", action="store_true")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    p.add_argument("opts", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts or [])
    cfg.MODEL.TOKENIZER.COLD_START = args.cold
    torch.manual_seed(0)
    model = BridleModel(cfg, "encoder").eval()
    pe = cfg.MODEL.PATCH_EMBED
    shape = [args.batch_size] + ([] if pe.IN_CHANS == 1 else [pe.IN_CHANS]) + list(pe.INPUT_SIZE)
    model.init_tokenizer_codebooks(smooth_input(shape, 0))  # fp32 (TARGET_PRECISION fp32)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    same, total = torch.zeros(model.num_levels), 0
    for i in range(args.batches):
        x = smooth_input(shape, 1 + i)
        model.target_precision = "fp32"
        with torch.autocast("cpu", dtype=dtype):
            ref = model.targets(x).codes.reshape(-1, model.num_levels)
        model.target_precision = "amp"
        with torch.autocast("cpu", dtype=dtype):
            amp = model.targets(x).codes.reshape(-1, model.num_levels)
        same += (ref == amp).float().sum(0)
        total += ref.shape[0]
    agree = same / total
    kind = "cold-start" if args.cold else "ViT (random init)"
    print(
        f"{kind} tokenizer, {args.config_file}, {total} patches: code agreement {args.dtype}-autocast vs fp32 "
        f"targets per level: "
        + ", ".join(f"l{l} {a:.4f} ({(1 - a) * 100:.2f}% changed)" for l, a in enumerate(agree.tolist()))
    )


if __name__ == "__main__":
    main()
