"""Running a model over a test loader and feeding its outputs to evaluators."""

import contextlib
import logging
import time
from typing import Dict, Iterable, List, Optional, Sequence, Union

import torch
import torch.nn as nn

from bridle.data.batch import BatchPreparer, is_empty
from bridle.utils import comm

logger = logging.getLogger(__name__)


class DatasetEvaluator:
    """The EVALUATOR contract: ``reset()``, ``process(outputs [B, C], batch)``,
    ``evaluate() -> dict[str, float]`` (the same dict on every rank). ``primary_metric`` names
    the metric used for model selection (higher is better)."""

    primary_metric: str = ""

    def reset(self) -> None:
        pass

    def process(self, outputs: torch.Tensor, batch: dict) -> None:
        raise NotImplementedError

    def evaluate(self) -> Dict[str, float]:
        raise NotImplementedError


class DatasetEvaluators(DatasetEvaluator):
    """Several evaluators behind one; their result dicts are merged (names must not clash)."""

    def __init__(self, evaluators: Sequence[DatasetEvaluator]) -> None:
        self.evaluators = list(evaluators)
        self.primary_metric = next((e.primary_metric for e in self.evaluators if e.primary_metric), "")

    def reset(self) -> None:
        for e in self.evaluators:
            e.reset()

    def process(self, outputs: torch.Tensor, batch: dict) -> None:
        for e in self.evaluators:
            e.process(outputs, batch)

    def evaluate(self) -> Dict[str, float]:
        results: Dict[str, float] = {}
        for e in self.evaluators:
            for k, v in (e.evaluate() or {}).items():
                if k in results:
                    raise KeyError(f"Two evaluators report the metric '{k}' (TEST.EVALUATORS); names must be unique.")
                results[k] = v
        return results


def _autocast(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _logits_of(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict) and isinstance(out.get("logits"), torch.Tensor):
        return out["logits"]
    raise TypeError(
        "In eval mode the model must return logits [B, C] (or a dict with 'logits'); "
        f"got {type(out).__name__}{' with keys ' + str(sorted(out)) if isinstance(out, dict) else ''}."
    )


def inference_on_dataset(
    model: nn.Module,
    data_loader: Iterable[dict],
    evaluators: Union[DatasetEvaluator, Sequence[DatasetEvaluator], None],
    device: Optional[Union[str, torch.device]] = None,
    amp_dtype: Optional[torch.dtype] = None,
) -> Dict[str, float]:
    """Run ``model`` (in eval mode, under ``no_grad`` and optional autocast) over every batch of
    ``data_loader``, pass its logits (as float32) and the batch to the evaluators, and return
    their merged results. Batches whose items were all unreadable are skipped. The model's
    train/eval state is restored afterwards."""
    if evaluators is None:
        evaluators = DatasetEvaluators([])
    elif not isinstance(evaluators, DatasetEvaluator):
        evaluators = DatasetEvaluators(list(evaluators))
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    evaluators.reset()
    was_training = model.training
    model.eval()
    n_batches = n_items = n_skipped = 0
    # to the device and through the dataset's own device_transform, as in training
    prepare = BatchPreparer(device, getattr(data_loader, "dataset", None))
    start = time.perf_counter()
    try:
        with torch.no_grad():
            for batch in data_loader:
                skipped = batch.get("num_skipped")
                if skipped is not None:
                    n_skipped += int(skipped)
                if is_empty(batch) or "input" not in batch:
                    continue
                batch = prepare(batch)
                with _autocast(device, amp_dtype):
                    out = model(batch)
                logits = _logits_of(out).float()
                evaluators.process(logits, batch)
                n_batches += 1
                n_items += int(logits.shape[0])
    finally:
        model.train(was_training)
    total_items = sum(comm.all_gather_object(n_items))
    total_skipped = sum(comm.all_gather_object(n_skipped))
    logger.info(
        f"Inference on {total_items} items ({n_batches} batches on this rank) took "
        f"{time.perf_counter() - start:.1f}s" + (f"; {total_skipped} unreadable items skipped" if total_skipped else "")
    )
    return evaluators.evaluate()


def build_evaluators(cfg, names: Optional[List[str]] = None) -> DatasetEvaluators:
    """The EVALUATOR entries named in TEST.EVALUATORS (or ``names``)."""
    from bridle.registry import EVALUATOR

    names = list(cfg.TEST.EVALUATORS if names is None else names)
    if not names:
        raise ValueError("TEST.EVALUATORS is empty: name at least one EVALUATOR entry (e.g. 'accuracy').")
    evaluators = []
    for n in names:
        ev = EVALUATOR.get(n)(cfg)
        lacks = [m for m in ("reset", "process", "evaluate") if not callable(getattr(ev, m, None))]
        if lacks:
            raise TypeError(
                f"EVALUATOR entry '{n}' (TEST.EVALUATORS, registered by {EVALUATOR.origin(n)}) built "
                f"{type(ev).__name__}, which lacks {lacks}: "
                "an evaluator has reset(), process(logits, batch), evaluate() -> dict."
            )
        evaluators.append(ev)
    return DatasetEvaluators(evaluators)
