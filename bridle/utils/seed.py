"""Seeds and random-number-generator state: the one place that derives seeds, seeds the
global generators (python, numpy, torch) and saves / restores their state.

Exact resume rests on these: every random draw of a run is made from a generator seeded from
(SEED, what, where) through :func:`derive_seed`, never from a state that depends on how the
run got there (loader workers, a restart)."""

import contextlib
import hashlib
import random
import time
from typing import Iterator

import numpy as np
import torch

__all__ = ["derive_seed", "rng_state", "seed_everything", "seeded", "set_rng_state"]


def derive_seed(seed: int, *keys) -> int:
    """A seed in [0, 2**31) derived from ``seed`` and ``keys`` (phase, iteration, rank, ...):
    independent streams for every (seed, keys), identical in every process and every run."""
    text = repr((int(seed),) + tuple(keys)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") % (2**31)


def seed_everything(seed: int, cuda: bool = True) -> None:
    """Seed python's ``random``, numpy's global generator and torch's CPU generator from
    ``seed``; with ``cuda`` also every CUDA device's (``torch.manual_seed``, which queues the
    CUDA seeding lazily when CUDA is not initialised yet). ``cuda=False`` touches the CPU
    generator only: what per-item seeding in a data loader wants (no CUDA call per item)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    if cuda:
        torch.manual_seed(seed)
    else:
        torch.random.default_generator.manual_seed(seed)


def seed_from_clock() -> int:
    """A seed in [0, 2**31) from the clock (SEED < 0 asks for one; it is logged)."""
    return int(time.time() * 1000) % (2**31)


@contextlib.contextmanager
def seeded(seed: int, restore: bool = True) -> Iterator[None]:
    """Run the body with python / numpy / torch-CPU seeded from ``seed`` (:func:`seed_everything`
    with ``cuda=False``); with ``restore`` their previous states come back afterwards (the
    caller's stream, e.g. the training step's in the main process, is left untouched)."""
    gen = torch.random.default_generator
    saved = (random.getstate(), np.random.get_state(), gen.get_state()) if restore else None
    seed_everything(seed, cuda=False)
    try:
        yield
    finally:
        if saved is not None:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            gen.set_state(saved[2])


def rng_state() -> dict:
    """Every global generator's state as plain types and tensors (loadable with
    ``torch.load(weights_only=True)``): python, numpy, torch CPU and, when available, CUDA."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned (the CUDA part only where CUDA is available)."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
