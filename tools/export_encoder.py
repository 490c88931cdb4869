#!/usr/bin/env python
"""Export a Bridle checkpoint as a self-describing folder (bridle.interop.hub, described there).

    python tools/export_encoder.py output/run/model_final.pth export/encoder [--license apache-2.0]
    python tools/export_encoder.py output/finetune/model_final.pth export/classifier --label-names labels.csv
    python tools/export_encoder.py output/run/model_final.pth export/tokenizer --tokenizer
    python tools/export_encoder.py output/run/model_final.pth encoder.pth [--timm encoder_timm.pth]

DST: a folder (model.safetensors, config.yaml, config.json, README.md), loadable with
bridle.load_encoder / bridle.load_classifier / bridle.load_tokenizer and as MODEL.WEIGHTS; a DST
ending in .pth keeps the older single-file layout (encoders only).
"""

import argparse
import json


def main(argv=None) -> dict:
    from bridle.interop.hub import DEFAULT_LICENSE, export, read_label_names
    from bridle.utils.logger import setup_logger

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="checkpoint (or exported folder) to read")
    p.add_argument("dst", help="folder to write (or a .pth file: the single-file encoder layout)")
    p.add_argument("--tokenizer", action="store_true", help="export the tokenizer of a pretraining checkpoint")
    p.add_argument("--encoder-only", action="store_true", help="export a classifier checkpoint's encoder only")
    p.add_argument(
        "--license", default=DEFAULT_LICENSE, help=f"license field of the model card (default: {DEFAULT_LICENSE})"
    )
    p.add_argument("--label-names", default="", metavar="FILE", help="classifier: JSON list, CSV or one name a line")
    p.add_argument("--timm", default=None, metavar="DST_TIMM", help=".pth DST only: also write the timm state dict")
    args = p.parse_args(argv)
    setup_logger("", 0, name="bridle")
    kind = "tokenizer" if args.tokenizer else "encoder" if args.encoder_only else None
    names = read_label_names(args.label_names) if args.label_names else None
    layout, out = export(args.src, args.dst, kind=kind, license=args.license, label_names=names, timm_path=args.timm)
    summary = out if layout == "file" else {k: out[k] for k in ("kind", "input_size", "grid_size", "license")}
    print(json.dumps(summary))
    return out


if __name__ == "__main__":
    main()
