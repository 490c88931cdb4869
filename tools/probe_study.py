#!/usr/bin/env python
"""Command line of bridle.demo.probe_study (its description follows in --help).

python tools/probe_study.py --demo image --seeds 0 1 --period 200
python tools/probe_study.py --demo audio --seeds 0 --period 400
"""

from bridle.demo.probe_study import main

if __name__ == "__main__":
    main(usage=__doc__)
