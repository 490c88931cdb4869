#!/usr/bin/env python
"""Command line of bridle.engine.submit: tools/train_net.py on Slurm (or locally) with requeue.

    python tools/submit.py --config-file configs/audio/pretrain_rq.yaml --nodes 4 --gpus-per-node 8 \\
        --partition learnfair --timeout 4320 OUTPUT_DIR /checkpoint/$USER/as2m_rq
    python tools/submit.py --config-file configs/image/tiny_pretrain.yaml --cluster local \\
        --gpus-per-node 0 --tasks-per-node 2 --wait OUTPUT_DIR out/local_job

How tasks, signals and requeues work follows in --help (bridle/engine/submit.py).
"""

import sys

from bridle.engine.submit import main

if __name__ == "__main__":
    sys.exit(main(epilog=__doc__))
