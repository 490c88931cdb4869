#!/usr/bin/env python
"""Micro-benchmarks of Bridle components.

    python tools/benchmark.py --component quantizer [--device cpu] [--json out.json]
    python tools/benchmark.py --list

Each component is a function ``fn(args) -> list[dict]`` registered in the BENCHMARK registry
(bridle/benchmark/: the modality-free ones; a plugin's in its ``benchmarks`` submodule); every
returned row is one measurement and the rows are printed as a table (and written to
``--json``). The model configs default to the AudioMAE-size recipe
(configs/audio/pretrain_rq.yaml, finetune_as2m.yaml). Benchmarks time things; tests never
assert wall-clock.
"""

import sys

from bridle.benchmark import main

DEFAULTS = {"config_file": "configs/audio/pretrain_rq.yaml", "finetune_config": "configs/audio/finetune_as2m.yaml"}

if __name__ == "__main__":
    main(sys.argv[1:], description=__doc__, defaults=DEFAULTS)
