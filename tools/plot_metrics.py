#!/usr/bin/env python
"""PNG plots of the runs under an output directory (matplotlib, no display needed).

    python tools/plot_metrics.py OUTPUT_DIR [--out DIR]

Every ``metrics.json`` below OUTPUT_DIR is read (one JSON object per line, as the trainers
write it). Two kinds of run are recognised:

- a pretraining schedule: a directory whose ``<k>_<phase>/metrics.json`` are its phases
  (a single pretraining run counts as a one-phase schedule). Its figure ``<name>.png``
  (``pretrain.png`` for OUTPUT_DIR itself or its ``pretrain/``)
  shows, on one iteration axis with the phases side by side: the losses per phase, the
  masked-prediction accuracy, the learning rate, and per codebook level the code usage (CUR),
  perplexity and dead-code count over time;
- a downstream run (its metrics hold ``val/...`` or ``test/...`` evaluations): all of them go
  into ``downstream.png``: val and test top-1 (or the first metric logged) over iterations,
  and the training loss.

The PNGs are written to DIR (default OUTPUT_DIR/plots); the list of files is printed.
"""

from bridle.utils.plots import main

if __name__ == "__main__":
    main(description=__doc__)
