#!/usr/bin/env python
"""Command line of bridle.utils.plots (its description follows in --help).

python tools/plot_metrics.py OUTPUT_DIR [--out DIR]
"""

from bridle.utils.plots import main

if __name__ == "__main__":
    main(usage=__doc__)
