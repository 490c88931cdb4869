"""The third-party toy plugin of the tests: ``tests/toy_site`` is a directory like a
site-packages holding the package ``bridle_toy`` (a 1-D "signal" modality with its own patch
embedder, dataset and config keys, outside the Bridle repository's packages) and its
``bridle_toy-0.1.dist-info`` (exactly what pip writes), whose ``bridle.plugins`` entry point
makes Bridle find it. pytest puts it on the import path (``pythonpath`` in pyproject.toml); a
subprocess gets it through PYTHONPATH (the ``toy_plugin`` fixture's environment)."""

import os

TOY_SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "toy_site")


def toy_opts(out_dir: str, **extra) -> list:
    """KEY VALUE overrides for a tiny BRIDLE run on the toy modality."""
    opts = {
        "OUTPUT_DIR": out_dir,
        "MODEL.DEVICE": "cpu",
        "MODEL.PATCH_EMBED.NAME": "toy_signal",
        "MODEL.PATCH_EMBED.IN_CHANS": 1,
        "MODEL.PATCH_EMBED.INPUT_SIZE": "[64]",
        "MODEL.PATCH_EMBED.PATCH_SIZE": "[8]",
        "MODEL.ENCODER.EMBED_DIM": 32,
        "MODEL.ENCODER.DEPTH": 1,
        "MODEL.ENCODER.NUM_HEADS": 2,
        "MODEL.TOKENIZER.EMBED_DIM": 32,
        "MODEL.TOKENIZER.DEPTH": 1,
        "MODEL.TOKENIZER.NUM_HEADS": 2,
        "MODEL.DECODER.EMBED_DIM": 32,
        "MODEL.DECODER.DEPTH": 1,
        "MODEL.DECODER.NUM_HEADS": 2,
        "MODEL.ESTIMATOR.EMBED_DIM": 32,
        "MODEL.ESTIMATOR.DEPTH": 1,
        "MODEL.ESTIMATOR.NUM_HEADS": 2,
        "MODEL.QUANTIZER.NUM_LEVELS": 2,
        "MODEL.QUANTIZER.CODEBOOK_SIZE": 16,
        "MODEL.QUANTIZER.CODE_DIM": 8,
        "MODEL.MASK.RATIO": 0.5,
        "DATASETS.TRAIN": "toy_signals",
        "DATALOADER.NUM_WORKERS": 0,
        "SOLVER.BATCH_SIZE_PER_GPU": 8,
        "SOLVER.MAX_ITER": 6,
        "SOLVER.BASE_LR": 1e-3,
        "SOLVER.CHECKPOINT_PERIOD": 3,
        "LOG_PERIOD": 2,
        "PROGRESS_BAR": False,
    }
    opts.update(extra)
    out = []
    for k, v in opts.items():
        out += [k, str(v)]
    return out


def toy_cfg(**extra):
    """The tiny toy config (``toy_opts``) as a mutable CfgNode, for in-process model tests."""
    from bridle.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_list(toy_opts("/tmp/unused", **extra))
    return cfg


def toy_signals(n: int = 8, seed: int = 0):
    """``[n, 64]`` toy items: sines of a few frequencies plus a little noise (seeded)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    t = torch.arange(64.0)
    freqs = torch.randint(1, 5, (n, 1), generator=g).float()
    return torch.sin(t * freqs / 4) + 0.05 * torch.randn(n, 64, generator=g)
