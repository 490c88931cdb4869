#!/usr/bin/env python
"""Command line of bridle.interop.hub (its description follows in --help).

    python tools/export_encoder.py output/run/3_encoder/model_final.pth export/encoder [--license apache-2.0]
    python tools/export_encoder.py output/finetune/model_final.pth export/classifier --label-names labels.csv
    python tools/export_encoder.py output/run/3_encoder/model_final.pth export/tokenizer --tokenizer
    python tools/export_encoder.py output/run/3_encoder/model_final.pth encoder.pth [--timm encoder_timm.pth]

DST: a folder (model.safetensors, config.yaml, config.json, README.md); a DST ending in .pth keeps
the single-file layout (encoders only).
"""

from bridle.interop.hub import export_main

if __name__ == "__main__":
    export_main(usage=__doc__)
