"""Hooks of the training loop: timing, lr schedule, checkpoints, metric writers,
progress bar, periodic evaluation."""
import logging
import os
import random
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from bridle.utils import comm

from .train_loop import HookBase

logger = logging.getLogger(__name__)


class IterationTimer(HookBase):
    def before_step(self) -> None:
        self._t = time.perf_counter()

    def after_step(self) -> None:
        self.trainer.storage.put_scalar("time", time.perf_counter() - self._t)


class LRScheduler(HookBase):
    """Sets every group's lr to ``schedule(iter) * group['lr_scale']`` before each step."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Callable[[int], float]) -> None:
        self.optimizer = optimizer
        self.schedule = schedule

    def before_step(self) -> None:
        lr = self.schedule(self.trainer.iter)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        self.trainer.storage.put_scalar("lr", lr)


def rng_state() -> dict:
    """Every RNG's state as plain types and tensors (loadable with ``weights_only=True``)."""
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
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class PeriodicCheckpointer(HookBase):
    """Saves ``model_{iter:07d}.pth`` every ``period`` iterations and ``model_final.pth`` at the
    end, keeping at most ``max_to_keep`` periodic files. The RNG state of every rank is saved."""

    def __init__(self, checkpointer, period: int, max_to_keep: int = 0) -> None:
        self.checkpointer = checkpointer
        self.period = int(period)
        self.max_to_keep = int(max_to_keep)
        self._recent: List[str] = []

    def _save(self, name: str) -> None:
        self.trainer.rng_states = comm.all_gather_object(rng_state())
        self.checkpointer.save(name, iteration=self.trainer.iter)
        comm.synchronize()

    def after_step(self) -> None:
        it = self.trainer.iter
        if self.period > 0 and (it + 1) % self.period == 0 and it + 1 < self.trainer.max_iter:
            name = f"model_{it:07d}"
            self._save(name)
            if comm.is_main_process() and self.max_to_keep > 0:
                self._recent.append(name)
                while len(self._recent) > self.max_to_keep:
                    old = os.path.join(self.checkpointer.save_dir, self._recent.pop(0) + ".pth")
                    if os.path.exists(old):
                        os.remove(old)

    def after_train(self) -> None:
        if self.trainer.iter >= self.trainer.max_iter:
            self.trainer.iter = self.trainer.max_iter - 1
            self._save("model_final")
            self.trainer.iter = self.trainer.max_iter


class PeriodicWriter(HookBase):
    """Flushes the storage every ``period`` iterations (and at the end) to the writers."""

    def __init__(self, writers: List, period: int = 20) -> None:
        self.writers = writers
        self.period = max(1, int(period))

    def _write(self) -> None:
        metrics = self.trainer.storage.flush()  # raises on a non-finite loss
        if metrics and comm.is_main_process():
            for w in self.writers:
                w.write(self.trainer.storage.iter, metrics)

    def after_step(self) -> None:
        it = self.trainer.iter
        if (it + 1) % self.period == 0 or it == self.trainer.max_iter - 1:
            self._write()

    def after_train(self) -> None:
        try:
            self._write()  # what is left: final evaluation, or metrics of a run that stopped early
        finally:
            for w in self.writers:
                w.close()


class ProgressBar(HookBase):
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and comm.is_main_process()
        self._bar = None

    def before_train(self) -> None:
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.trainer.max_iter, initial=self.trainer.start_iter, dynamic_ncols=True,
                desc="train", leave=False,
            )

    def after_step(self) -> None:
        if self._bar is not None:
            self._bar.update(1)
            latest = self.trainer.storage.latest
            if "total_loss" in latest:
                self._bar.set_postfix(loss=f"{latest['total_loss']:.4g}", refresh=False)

    def after_train(self) -> None:
        if self._bar is not None:
            self._bar.close()


class EvalHook(HookBase):
    """Runs ``eval_fn() -> dict`` every ``period`` iterations and after the last one; the
    results go to the storage (and so to metrics.json / TensorBoard)."""

    def __init__(self, period: int, eval_fn: Callable[[], Dict[str, float]]) -> None:
        self.period = int(period)
        self.eval_fn = eval_fn
        self.last_results: Optional[Dict[str, float]] = None

    def _do_eval(self) -> None:
        results = self.eval_fn() or {}
        flat = _flatten(results)
        for k, v in flat.items():
            self.trainer.storage.put_scalar(k, float(v))
        self.last_results = results
        comm.synchronize()

    def after_step(self) -> None:
        nxt = self.trainer.iter + 1
        if self.period > 0 and nxt % self.period == 0 and nxt != self.trainer.max_iter:
            self._do_eval()

    def after_train(self) -> None:
        if self.trainer.iter >= self.trainer.max_iter:
            self._do_eval()


def _flatten(d: dict, prefix: str = "") -> Dict[str, float]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        elif isinstance(v, (int, float)):
            out[key] = v
    return out
