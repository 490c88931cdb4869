"""Metric storage that never syncs the device per step.

Scalars put during a step stay tensors (on whatever device); :meth:`EventStorage.flush`
moves everything to the host in one transfer every LOG_PERIOD and averages the window.
"""

import json
import logging
import math
import os
from collections import defaultdict
from typing import Dict, List, Optional, Union

import torch

Number = Union[float, int, torch.Tensor]
logger = logging.getLogger(__name__)


class EventStorage:
    def __init__(self, start_iter: int = 0) -> None:
        self.iter = start_iter
        self._window: Dict[str, List[Number]] = defaultdict(list)
        self.latest: Dict[str, float] = {}
        self._loss_keys = set()
        self._latest_keys = set()

    def put_scalar(self, name: str, value: Number, is_loss: bool = False, latest: bool = False) -> None:
        """Record a scalar. ``latest``: the value is a state (lr, a schedule, a running count),
        logged as its current value instead of the window mean."""
        if isinstance(value, torch.Tensor):
            value = value.detach()
        if latest:
            self._latest_keys.add(name)
            self._window[name] = [value]
            return
        self._window[name].append(value)
        if is_loss:
            self._loss_keys.add(name)

    def flush(self) -> Dict[str, float]:
        """Window averages of every scalar since the last flush (one host transfer).
        Raises FloatingPointError when a loss was non-finite in the window."""
        if not any(k not in self._latest_keys for k in self._window):
            return {}  # only states (lr, counts) since the last flush: nothing happened
        names, tensors, floats = [], [], {}
        for name, vals in self._window.items():
            tvals = [v for v in vals if isinstance(v, torch.Tensor)]
            if tvals:
                names.append(name)
                tensors.append(torch.stack([t.float().reshape(()) for t in tvals]))
            else:
                floats[name] = float(sum(vals) / len(vals))
        host: Dict[str, List[float]] = {}
        if tensors:
            # Group by device; one copy per device.
            by_dev: Dict[torch.device, List[int]] = defaultdict(list)
            for i, t in enumerate(tensors):
                by_dev[t.device].append(i)
            for dev, idxs in by_dev.items():
                lens = [tensors[i].numel() for i in idxs]
                flat = torch.cat([tensors[i] for i in idxs]).cpu().tolist()
                o = 0
                for i, n in zip(idxs, lens):
                    host[names[i]] = flat[o : o + n]
                    o += n
        out = dict(floats)
        bad = {
            name: next(v for v in vals if not math.isfinite(v))
            for name, vals in host.items()
            if name in self._loss_keys and not all(math.isfinite(v) for v in vals)
        }
        if bad:
            self._window.clear()
            # Name the individual losses first; the total is non-finite because of them.
            names = sorted(bad, key=lambda n: (n == "total_loss", n))
            desc = ", ".join(f"'{n}' = {bad[n]}" for n in names)
            raise FloatingPointError(f"Loss became non-finite ({desc}) at or before iteration {self.iter + 1}.")
        for name, vals in host.items():
            out[name] = sum(vals) / len(vals)
        self._window.clear()
        self.latest.update(out)
        return out


class JSONWriter:
    """One JSON object per line: {"iteration": i, metric: value, ...}; i = iterations done."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            self._f = open(path, "a")
        except OSError as e:
            raise OSError(e.errno, f"Cannot open the metrics file '{path}': {e.strerror or e}") from e

    def write(self, iteration: int, metrics: Dict[str, float]) -> None:
        try:
            self._f.write(json.dumps({"iteration": iteration, **metrics}, sort_keys=True) + "\n")
            self._f.flush()
        except OSError as e:
            raise OSError(e.errno, f"Cannot write the metrics file '{self.path}': {e.strerror or e}") from e

    def close(self) -> None:
        try:
            self._f.close()
        except OSError as e:
            raise OSError(e.errno, f"Cannot write the metrics file '{self.path}': {e.strerror or e}") from e


class TensorboardWriter:
    def __init__(self, log_dir: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._w = SummaryWriter(log_dir)

    def write(self, iteration: int, metrics: Dict[str, float]) -> None:
        for k, v in metrics.items():
            self._w.add_scalar(k, v, iteration)
        self._w.flush()

    def close(self) -> None:
        self._w.close()


class ConsoleWriter:
    """The console line: iteration, ETA, losses, lr, time."""

    def __init__(self, max_iter: int, log: Optional[logging.Logger] = None) -> None:
        self.max_iter = max_iter
        self.log = log or logging.getLogger("bridle.train")

    def write(self, iteration: int, metrics: Dict[str, float]) -> None:
        eta = ""
        t = metrics.get("time")
        if t is not None:
            secs = int(t * max(0, self.max_iter - iteration))
            eta = f"eta: {secs // 3600}:{secs % 3600 // 60:02d}:{secs % 60:02d}  "
        losses = "  ".join(f"{k}: {v:.4g}" for k, v in sorted(metrics.items()) if k.startswith("loss"))
        extra = ""
        if "time" in metrics:
            extra += f"  time: {metrics['time']:.4f}"
        if "lr" in metrics:
            extra += f"  lr: {metrics['lr']:.4g}"
        if metrics.get("data/skipped_total"):
            extra += f"  skipped: {int(metrics['data/skipped_total'])}"
        if metrics.get("nonfinite_skipped"):
            extra += f"  nonfinite skipped: {int(metrics['nonfinite_skipped'])}"
        self.log.info(f"{eta}iter: {iteration}/{self.max_iter}  {losses}{extra}")

    def close(self) -> None:
        pass
