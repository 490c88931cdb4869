"""The training loop: a small TrainerBase with hooks and one step implementation.

The loop never knows what the model is: ``model(batch)`` returns a dict whose ``loss*``
entries are summed and back-propagated; other entries are logged as metrics.
"""

import contextlib
import logging
import time
import weakref
from typing import Callable, Dict, Iterable, List, Optional

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

# BadDataError has its home next to the accounting that raises it; importable from here as before
from bridle.data.batch import BadDataError, BadItemAccounting, prepare_batch, to_device  # noqa: F401
from bridle.utils import comm

from .events import EventStorage

logger = logging.getLogger(__name__)

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
NONFINITE_POLICIES = ("stop", "skip")


class HookBase:
    """Called by the trainer around each step; ``self.trainer`` is set on registration."""

    trainer: "TrainerBase" = None

    def before_train(self) -> None: ...

    def after_train(self) -> None: ...

    def before_step(self) -> None: ...

    def after_step(self) -> None: ...

    def state_dict(self) -> dict:
        return {}


class TrainerBase:
    def __init__(self) -> None:
        self._hooks: List[HookBase] = []
        self.iter = 0
        self.start_iter = 0
        self.max_iter = 0
        self.storage: Optional[EventStorage] = None

    def register_hooks(self, hooks: Iterable[Optional[HookBase]]) -> None:
        for h in hooks:
            if h is None:
                continue
            h.trainer = weakref.proxy(self)
            self._hooks.append(h)

    def train(self, start_iter: int, max_iter: int) -> None:
        # ``self.iter`` is the 0-based index of the step being run; everything a user sees
        # (console, metrics.json, checkpoint names, messages) counts iterations *done*: the
        # step with index i is iteration i + 1 (docs/checkpoints.md).
        logger.info(f"Starting training at iteration {start_iter + 1} of {max_iter} ({start_iter} done)")
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        self.storage = EventStorage(start_iter)
        try:
            self.before_train()
            for self.iter in range(start_iter, max_iter):
                self.storage.iter = self.iter
                self.before_step()
                self.run_step()
                self.after_step()
            self.iter += 1  # the loop ended normally: all max_iter steps ran
        finally:
            self.after_train()

    def before_train(self) -> None:
        for h in self._hooks:
            h.before_train()

    def after_train(self) -> None:
        self.storage.iter = self.iter
        for h in self._hooks:
            h.after_train()

    def before_step(self) -> None:
        for h in self._hooks:
            h.before_step()

    def after_step(self) -> None:
        for h in self._hooks:
            h.after_step()

    def run_step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        # Iterations done (the file model_{N:07d}.pth holds "iteration": N).
        return {"iteration": self.iter + 1, "numbering": "done"}

    def load_state_dict(self, state: dict) -> None:
        done = int(state["iteration"])
        # Checkpoints written before the one numbering stored the index of the last step.
        self.iter = done - 1 if state.get("numbering") == "done" else done


def _accounting_field(name: str, cast: Callable):
    """A trainer attribute that reads and writes ``trainer.data_accounting.<name>``."""
    return property(
        lambda self: getattr(self.data_accounting, name),
        lambda self, value: setattr(self.data_accounting, name, cast(value)),
    )


class SimpleTrainer(TrainerBase):
    """One optimisation step: ``accum_steps`` micro-batches under autocast (fp32 / bf16 / fp16
    with a GradScaler), optional batch transforms, gradient clipping. No host sync."""

    def __init__(
        self,
        model: nn.Module,
        data_loader: Optional[Iterable] = None,
        optimizer: Optional[torch.optim.Optimizer] = None,
        precision: str = "fp32",
        accum_steps: int = 1,
        clip_grad: float = 0.0,
        batch_transforms: Optional[List[Callable[[dict], dict]]] = None,
        device: Optional[torch.device] = None,
        nonfinite: str = "stop",
        nonfinite_budget: int = 0,
        max_bad_fraction: float = 0.01,
        dataset_transform: Optional[Callable[[dict], dict]] = None,
    ) -> None:
        super().__init__()
        if precision not in _DTYPES:
            raise ValueError(f"SOLVER.PRECISION must be one of {list(_DTYPES)}; got '{precision}'.")
        if nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"SOLVER.NONFINITE must be one of {list(NONFINITE_POLICIES)}; got '{nonfinite}'.")
        self.model = model
        self.data_loader = data_loader
        self._data_iter = None
        self.optimizer = optimizer
        self.precision = precision
        self.accum_steps = max(1, int(accum_steps))
        self.clip_grad = float(clip_grad)
        # A batch reaches the model through bridle.data.prepare_batch: to the device, the
        # dataset's device_transform, then these.
        self.dataset_transform = dataset_transform
        self.batch_transforms = batch_transforms or []
        self.device = device or next(model.parameters()).device
        self.amp_dtype = _DTYPES[precision]
        enabled = precision == "fp16"
        self.grad_scaler = torch.amp.GradScaler(self.device.type, enabled=enabled) if enabled else None
        # Non-finite losses: counted on the device (no per-step host sync with policy "stop");
        # read at log and checkpoint boundaries (check_finite).
        self.nonfinite = nonfinite
        self.nonfinite_budget = int(nonfinite_budget)
        self.nonfinite_skipped = 0
        self._nonfinite_count: Optional[torch.Tensor] = None
        # Unreadable items and empty batches: the data side's accounting (bridle.data.batch),
        # owned here because its counters are part of this trainer's checkpoint.
        self.data_accounting = BadItemAccounting(max_bad_fraction)
        # Every rank's rank_state(), gathered at checkpoint time (each rank reads its own data).
        self.rank_states: Optional[list] = None
        self._rank_state_before_step: Optional[dict] = None
        # A forward updates buffers (EMA codebooks and their usage windows, BatchNorm statistics).
        # Their values before the step are kept where a step can end without an update: with
        # accumulation a later micro-batch can fail to load after the first ones ran forward
        # (the last completed step's state is saved), and with SOLVER.NONFINITE skip a dropped
        # step leaves no trace (restore_state_before_step). The copies are allocated once and
        # refreshed in place every step; _buffers_saved: they hold this step's start.
        self._buffer_copies: Optional[List[torch.Tensor]] = None
        self._buffers_saved = False

    # -- data
    def _next_batch(self) -> dict:
        if self._data_iter is None:
            self._data_iter = self.data_accounting.open(self.data_loader)
        return self.data_accounting.next_batch(self._data_iter, self._dataset_size, self.storage.put_scalar)

    def _dataset_size(self) -> int:
        loader = self.data_loader
        return len(getattr(loader, "dataset", ())) if hasattr(loader, "dataset") else 0

    def to_device(self, batch: dict) -> dict:
        return to_device(batch, self.device)

    # The accounting's counters, under the names they have always had on the trainer.
    max_bad_fraction = _accounting_field("max_bad_fraction", float)
    min_items_for_bad_check = _accounting_field("min_items", int)
    data_seen = _accounting_field("seen", int)
    data_bad = _accounting_field("bad", int)
    empty_batches = _accounting_field("empty_batches", int)
    bad_items = _accounting_field("bad_items", list)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # -- step
    def run_step(self) -> None:
        assert self.model.training, "SimpleTrainer: the model was switched to eval mode"
        # Until this step completes, rank_state() is the state before it: a checkpoint written
        # when the step fails (too many unreadable items) holds the last completed step's.
        self._rank_state_before_step = self._rank_counters()
        if self.accum_steps > 1 or self.nonfinite == "skip":
            self._save_buffers()
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        sums: Dict[str, torch.Tensor] = {}
        for micro in range(self.accum_steps):
            batch = self._next_batch()
            data_time = time.perf_counter() - start
            batch = prepare_batch(batch, self.device, self.dataset_transform, self.batch_transforms)
            ddp = self.model if isinstance(self.model, DistributedDataParallel) else getattr(self, "ddp_model", None)
            sync = ddp.no_sync() if ddp is not None and micro < self.accum_steps - 1 else contextlib.nullcontext()
            with sync:
                with self.autocast():
                    out = self.model(batch)
                losses = {k: v for k, v in out.items() if k.startswith("loss")}
                if not losses:
                    raise KeyError("The model returned no 'loss*' entry in training mode.")
                total = sum(losses.values()) / self.accum_steps
                if self.grad_scaler is not None:
                    self.grad_scaler.scale(total).backward()
                else:
                    total.backward()
            for k, v in out.items():
                if isinstance(v, torch.Tensor) and v.numel() == 1:
                    v = v.detach().float() / self.accum_steps
                    sums[k] = sums[k] + v if k in sums else v
        if self.clip_grad > 0:
            if self.grad_scaler is not None:
                self.grad_scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            sums["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, self.clip_grad)
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)  # fp16: the scaler itself skips inf/NaN steps
            self.grad_scaler.update()
        elif self._finite_step(sums):
            self.optimizer.step()
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.restore_state_before_step()
            self._rank_state_before_step = None
            return  # skipped step: its (non-finite) losses are not recorded
        total_loss = sum(v for k, v in sums.items() if k.startswith("loss"))
        self.storage.put_scalar("total_loss", total_loss, is_loss=True)
        for k, v in sums.items():
            self.storage.put_scalar(k, v, is_loss=k.startswith("loss"))
        self.storage.put_scalar("data_time", data_time)
        self._rank_state_before_step, self._buffers_saved = None, False

    def _save_buffers(self) -> None:
        buffers = [b.detach() for b in self.model.buffers()]
        copies = self._buffer_copies
        like = [(b.shape, b.dtype, b.device) for b in buffers]
        if copies is None or [(c.shape, c.dtype, c.device) for c in copies] != like:
            self._buffer_copies = [b.clone() for b in buffers]
        elif buffers:
            torch._foreach_copy_(copies, buffers)
        self._buffers_saved = True

    def restore_state_before_step(self) -> bool:
        """After a step that ends without an update (a micro-batch could not be loaded, or
        SOLVER.NONFINITE skip dropped it), put back the buffers its forwards changed, so the
        model holds the last completed step's state. Parameters change only in the optimizer
        step, after every micro-batch. True if anything was put back."""
        if not self._buffers_saved:
            return False
        self._buffers_saved = False
        buffers = [b.detach() for b in self.model.buffers()]
        if buffers:
            torch._foreach_copy_(buffers, self._buffer_copies)
        return True

    def _finite_step(self, sums: Dict[str, torch.Tensor]) -> bool:
        """Policy bookkeeping before the optimizer step: True to apply the step.

        "stop": count non-finite steps on the device (no sync) and always step; the run stops
        at the next log / checkpoint boundary. "skip": one host sync per step; a non-finite
        step is dropped (no optimizer update), and more than SOLVER.NONFINITE_BUDGET dropped
        steps stop the run."""
        terms = [v for k, v in sums.items() if k.startswith("loss") or k == "grad_norm"]
        if not terms:
            return True
        bad = ~torch.isfinite(torch.stack([t.detach().float().reshape(()) for t in terms])).all()
        if self.nonfinite == "skip":
            if comm.get_world_size() > 1:
                # Every rank skips together: a rank whose own loss is finite holds the averaged
                # (non-finite) gradients too, and stepping alone would split the replicas.
                dev = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
                bad = comm.all_reduce_(bad.to(device=dev, dtype=torch.int32).reshape(1), "sum")[0] > 0
            if not bool(bad):
                return True
            self.nonfinite_skipped += 1
            logger.warning(
                f"Non-finite loss or gradient (on at least one rank) at iteration {self.iter + 1}: step skipped "
                f"({self.nonfinite_skipped} of at most SOLVER.NONFINITE_BUDGET {self.nonfinite_budget})."
            )
            self.storage.put_scalar("nonfinite_skipped", float(self.nonfinite_skipped), latest=True)
            if self.nonfinite_skipped > self.nonfinite_budget:
                raise FloatingPointError(
                    f"{self.nonfinite_skipped} non-finite steps skipped, more than SOLVER.NONFINITE_BUDGET "
                    f"{self.nonfinite_budget} (SOLVER.NONFINITE skip), at iteration {self.iter + 1}."
                )
            return False
        b = bad.to(torch.int32)
        self._nonfinite_count = b if self._nonfinite_count is None else self._nonfinite_count + b
        return True

    def check_finite(self) -> None:
        """Raise FloatingPointError if a non-finite loss was seen (one host sync)."""
        if self._nonfinite_count is not None and int(self._nonfinite_count) > 0:
            n = int(self._nonfinite_count)
            raise FloatingPointError(f"Loss became non-finite in {n} step(s) at or before iteration {self.iter + 1}.")

    def state_is_finite(self) -> bool:
        """Whether every parameter and optimizer tensor is finite (one host sync)."""
        flags = [torch.isfinite(p.detach()).all() for p in self.model.parameters()]
        if self.optimizer is not None:
            for st in self.optimizer.state.values():
                flags += [
                    torch.isfinite(v).all()
                    for v in st.values()
                    if isinstance(v, torch.Tensor) and v.is_floating_point()
                ]
        return bool(torch.stack([f.to(self.device) for f in flags]).all()) if flags else True

    def rank_state(self) -> dict:
        """This process's data bookkeeping: where its loader stands beyond the iteration count,
        and its run-wide unreadable-item counts (DATALOADER.MAX_BAD_FRACTION). Every rank has
        its own; the checkpoint holds them all (``rank_states``)."""
        if self._rank_state_before_step is not None:
            return dict(self._rank_state_before_step)
        return self._rank_counters()

    def _rank_counters(self) -> dict:
        return self.data_accounting.state_dict()

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.grad_scaler is not None:
            state["grad_scaler"] = self.grad_scaler.state_dict()
        if self.rank_states is not None:
            state["rank_states"] = self.rank_states
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if self.grad_scaler is not None and "grad_scaler" in state:
            self.grad_scaler.load_state_dict(state["grad_scaler"])
        ranks = state.get("rank_states") or []
        mine = ranks[comm.get_rank()] if comm.get_rank() < len(ranks) else {}  # older checkpoints: none
        self.data_accounting.load_state_dict(mine)
