#!/usr/bin/env python
"""Export the tokenizer of a BRIDLE pretraining checkpoint as a folder (= tools/export_encoder.py
--tokenizer; bridle.interop.hub).

    python tools/export_tokenizer.py output/run/pretrain/3_encoder/model_final.pth export/tokenizer
"""

import sys

if __name__ == "__main__":
    from bridle.interop.hub import export_tokenizer_main

    export_tokenizer_main(sys.argv[1:], __doc__)
