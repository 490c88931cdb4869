#!/usr/bin/env python
"""The one entry point: pretraining schedules, single phases, fine-tuning, linear probing,
evaluation.

    python tools/train_net.py --config-file configs/audio/pretrain_rq.yaml [KEY VALUE ...]
    python tools/train_net.py --config-file ... --num-gpus 8
    torchrun --nproc-per-node 8 --nnodes 2 ... tools/train_net.py --config-file ...
    python tools/train_net.py --list

Exit codes: 0 done; 2 a user error (a config key, type or value, a missing or unreadable file, an
OUTPUT_DIR that cannot be used or already holds a run, too much unreadable data), printed as one
line ``bridle: error: <message>`` on stderr without a traceback (``--debug`` or BRIDLE_DEBUG=1
adds it; see bridle/errors.py); 75 stopped on request with a checkpoint (continue with --resume);
1 anything else (a bug: its traceback).
"""

import sys

from bridle.engine.entry import invoke_main

if __name__ == "__main__":
    invoke_main()
    sys.exit(0)
