#!/usr/bin/env python
"""Time to accuracy of a demo's pretraining recipe (bridle/demo/tta.py): linear probe of the final
encoder vs pretraining CPU-seconds, committed recipe vs PRETRAIN.NUM_MASKS / shorter variants.

    python tools/time_to_accuracy.py --demo-module bridle_image.demo --seeds 0 1 --docs-dir docs/img

``--help`` describes it."""

from bridle.demo.tta import main

if __name__ == "__main__":
    main()
