"""Hooks of the training loop: per-step seeding, timing, lr schedule, checkpoints, metric
writers, progress bar, periodic evaluation, stop requests."""

import logging
import os
import re
import time
from typing import Callable, Dict, List, Optional

import torch
import torch.distributed as dist

from bridle.protocols import ChecksFinite, DataAccounting, PerRankState, StateFiniteness, supports
from bridle.utils import comm

# set_rng_state has its home in bridle.utils.seed with rng_state; importable from here as before
from bridle.utils.seed import derive_seed, rng_state, seed_everything, set_rng_state  # noqa: F401

from . import signals
from .train_loop import HookBase

logger = logging.getLogger(__name__)


class StepSeeder(HookBase):
    """Before every step, seed python / numpy / torch (CPU and CUDA) from (SEED, "step",
    iteration, rank): every random draw of a step (masks, dropout, quantizer restarts) depends
    only on the run's seed and the iteration, so a resumed run repeats the same draws."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def before_step(self) -> None:
        seed_everything(derive_seed(self.seed, "step", self.trainer.iter, comm.get_rank()))


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
        self.trainer.storage.put_scalar("lr", lr, latest=True)  # the current value, not a window mean


_PERIODIC = re.compile(r"^model_(\d{7})\.pth$")


class PeriodicCheckpointer(HookBase):
    """Saves ``model_{N:07d}.pth`` (N = iterations done) every ``period`` iterations and
    ``model_final.pth`` at the end, keeping at most ``max_to_keep`` periodic files (those already on disk from before a
    resume included). The RNG state of every rank is saved.

    No non-finite state is ever saved: before each write the non-finite counter of the
    trainer and the finiteness of the parameters / optimizer state are checked (one host sync
    per checkpoint); on failure a FloatingPointError is raised and nothing is written, so the
    previous checkpoint (which retention never deletes) stays the last good one."""

    def __init__(self, checkpointer, period: int, max_to_keep: int = 0) -> None:
        self.checkpointer = checkpointer
        self.period = int(period)
        self.max_to_keep = int(max_to_keep)
        self._recent: List[str] = []

    def before_train(self) -> None:
        d = self.checkpointer.save_dir
        if d and os.path.isdir(d):  # periodic files of the run before a resume count too
            found = sorted(f[:-4] for f in os.listdir(d) if _PERIODIC.match(f))
            self._recent = [n for n in found if int(n[6:]) <= self.trainer.start_iter]

    def _check_finite(self) -> None:
        t = self.trainer
        if comm.get_world_size() > 1 and supports(t, StateFiniteness):
            # Every rank decides alike (a rank raising alone would leave the others waiting).
            counted = getattr(t, "_nonfinite_count", None)
            bad = (counted is not None and int(counted) > 0) or not t.state_is_finite()
            dev = t.device if dist.get_backend() == "nccl" else torch.device("cpu")
            if int(comm.all_reduce_(torch.tensor([int(bad)], device=dev), "sum").item()) > 0:
                raise FloatingPointError(
                    f"Loss or model state became non-finite (on at least one rank) at or before iteration {t.iter + 1}."
                )
            return
        if supports(t, ChecksFinite):
            t.check_finite()
        if supports(t, StateFiniteness) and not t.state_is_finite():
            raise FloatingPointError(
                f"The model or optimizer state became non-finite at or before iteration {t.iter + 1}."
            )

    def _save(self, name: str) -> str:
        self._check_finite()
        self.trainer.rng_states = comm.all_gather_object(rng_state())
        if supports(self.trainer, PerRankState):  # each rank's data position and bad-item counts
            self.trainer.rank_states = comm.all_gather_object(self.trainer.rank_state())
        self.checkpointer.save(name, iteration=self.trainer.iter + 1)  # iterations done
        comm.synchronize()
        return os.path.join(self.checkpointer.save_dir, name + ".pth")

    def save_now(self) -> str:
        """Write ``model_{N:07d}.pth`` for the N iterations done (a stop request)."""
        name = f"model_{self.trainer.iter + 1:07d}"
        path = self._save(name)
        self._retain(name)
        return path

    def _retain(self, name: str) -> None:
        if comm.is_main_process() and self.max_to_keep > 0:
            if name not in self._recent:
                self._recent.append(name)
            while len(self._recent) > self.max_to_keep:
                old = os.path.join(self.checkpointer.save_dir, self._recent.pop(0) + ".pth")
                if os.path.exists(old):
                    os.remove(old)

    def after_step(self) -> None:
        it = self.trainer.iter
        if self.period > 0 and (it + 1) % self.period == 0 and it + 1 < self.trainer.max_iter:
            name = f"model_{it + 1:07d}"
            self._save(name)
            self._retain(name)

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
        t = self.trainer
        if supports(t, DataAccounting):  # unreadable items, summed over ranks
            bad = t.data_bad
            if comm.get_world_size() > 1:
                dev = t.device if dist.get_backend() == "nccl" else torch.device("cpu")
                bad = int(comm.all_reduce_(torch.tensor([bad], device=dev), "sum").item())
            t.storage.put_scalar("data/skipped_total", float(bad), latest=True)
        metrics = self.trainer.storage.flush()  # raises on a non-finite loss (naming it)
        if metrics and comm.is_main_process():
            # Iterations done; after the loop ended normally storage.iter is already max_iter.
            done = min(self.trainer.storage.iter + 1, self.trainer.max_iter)
            for w in self.writers:
                w.write(done, metrics)

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
                total=self.trainer.max_iter,
                initial=self.trainer.start_iter,
                dynamic_ncols=True,
                desc="train",
                leave=False,
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


class StopOnRequest(HookBase):
    """Stops training at a step boundary when :func:`bridle.engine.signals.request_stop` was
    called (SIGTERM / SIGINT / SIGUSR1 handlers, a submitit callback): writes a checkpoint
    through ``checkpoint_hook`` and raises :class:`~bridle.engine.signals.TrainingInterrupted`.

    With one process the request is read every step (a Python variable). With several, the
    ranks agree through an asynchronous MAX all-reduce of a one-element flag started every
    ``period`` iterations and waited ``period`` iterations later, so every rank stops at the
    same iteration and no step waits on the host."""

    def __init__(self, checkpoint_hook: "PeriodicCheckpointer", period: int = 10) -> None:
        self.checkpoint_hook = checkpoint_hook
        self.period = max(1, int(period))
        self._work = None
        self._flag: Optional[torch.Tensor] = None

    def _agreed_reason(self) -> Optional[str]:
        if comm.get_world_size() == 1:
            return signals.stop_requested()
        t = self.trainer
        if (t.iter + 1) % self.period != 0:
            return None
        reason = None
        if self._work is not None:
            self._work.wait()
            if int(self._flag.item()) > 0:
                reason = signals.stop_requested() or "stop requested on another rank"
        dev = t.device if dist.get_backend() == "nccl" else torch.device("cpu")
        self._flag = torch.tensor([1 if signals.stop_requested() else 0], dtype=torch.int32, device=dev)
        self._work = dist.all_reduce(self._flag, op=dist.ReduceOp.MAX, async_op=True)
        return reason

    def after_step(self) -> None:
        t = self.trainer
        reason = self._agreed_reason()
        if reason is None or t.iter + 1 >= t.max_iter:
            return  # the last step: training ends normally and writes model_final
        self._finish_pending()
        path = self.checkpoint_hook.save_now()
        logger.info(f"Stop requested ({reason}): wrote {path} at iteration {t.iter + 1}")
        raise signals.TrainingInterrupted(reason, checkpoint=path, iteration=t.iter + 1)

    def _finish_pending(self) -> None:
        if self._work is not None:
            self._work.wait()
            self._work = None

    def after_train(self) -> None:
        self._finish_pending()


def _flatten(d: dict, prefix: str = "") -> Dict[str, float]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        elif isinstance(v, (int, float)):
            out[key] = v
    return out
