#!/usr/bin/env python
"""Command line of bridle.interop.hub for tokenizers (= tools/export_encoder.py --tokenizer).

python tools/export_tokenizer.py output/run/3_encoder/model_final.pth export/tokenizer [--license apache-2.0]
"""

from bridle.interop.hub import export_main

if __name__ == "__main__":
    export_main(usage=__doc__, tokenizer_only=True)
