#!/usr/bin/env python
"""Time to accuracy of a demo's pretraining recipe (bridle/demo/tta.py): linear probe of the final
encoder vs pretraining CPU-seconds, committed recipe vs PRETRAIN.NUM_MASKS / shorter variants.

    # the image demo's grid, both seeds, then the table and the plot into docs/img/
    python tools/time_to_accuracy.py --demo-module bridle_image.demo --seeds 0 1 \\
        --variants m1_e1_t1 m2_e0.5_t1 m4_e0.5_t1 m4_e0.25_t1 --docs-dir docs/img
    # only rebuild the table and the plot from the finished runs
    python tools/time_to_accuracy.py --demo-module bridle_image.demo --table-only --docs-dir docs/img

``--help`` describes it."""

from bridle.demo.tta import main

if __name__ == "__main__":
    main()
