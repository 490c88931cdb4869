#!/usr/bin/env python
"""K-fold cross-validation: one training run per fold, then mean ± std of a metric.

    python tools/cross_validate.py --config-file CFG --fold-key DATASETS.AUDIO.ESC50_FOLD \
        --folds 1 2 3 4 5 [--metric top1] [--select last|val] [--num-gpus N] [KEY VALUE ...]

Each fold runs exactly what ``tools/train_net.py`` runs (its ``main``), with the overrides
``KEY VALUE ... <fold-key> <fold> OUTPUT_DIR <OUTPUT_DIR>/fold_<fold>``. The metric of a fold
is read from its ``final_results.json``: the test metric of the last evaluation (``--select
last``, the default) or of the val-selected evaluation (``--select val``, needs DATASETS.VAL).
``--metric`` defaults to the primary metric of the first evaluator (top1 / mAP / auc).
The summary (per-fold values, mean, population std) is printed and written to
``<OUTPUT_DIR>/cv_results.json``. With ``--resume``, folds that already have
final_results.json are not rerun and unfinished folds resume from their last checkpoint; a fold
directory holding a run is otherwise refused (as by train_net.py) unless ``--overwrite``, which
retrains every fold afresh. User errors end in one line ``bridle: error: ...`` and exit code 2.
"""

import sys

from bridle.evaluation.cross_validate import cli

if __name__ == "__main__":
    cli(description=__doc__)
    sys.exit(0)
