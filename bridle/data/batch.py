"""From a loader batch to model input: the one path every consumer takes (the training loop,
the evaluator, the codebook initialisation, the tools).

:func:`prepare_batch` moves a collated batch to the device and applies the dataset's own
``device_transform`` (e.g. features computed on the device from raw items), then any further
batch transforms (INPUT.BATCH_TRANSFORMS). :class:`BadItemAccounting` is the training side of
unreadable items: it draws batches from a loader iterator, passes over batches that hold no
readable item, counts skipped items run-wide and stops the run beyond
DATALOADER.MAX_BAD_FRACTION. Its counters are part of the checkpoint (``rank_states``), so a
resumed run continues the count and the loader position exactly."""

import logging
from typing import Callable, Iterable, Iterator, List, Optional, Sequence

import torch

from bridle.errors import UserError

__all__ = [
    "BadDataError",
    "BadItemAccounting",
    "BatchPreparer",
    "apply_device_transform",
    "device_transform_of",
    "is_empty",
    "prepare_batch",
    "to_device",
]

logger = logging.getLogger(__name__)

BatchFn = Callable[[dict], dict]


class BadDataError(UserError, RuntimeError):
    """Too many unreadable training items (DATALOADER.MAX_BAD_FRACTION exceeded)."""


# ----------------------------------------------------------------------------- to the device
def device_transform_of(dataset) -> Optional[BatchFn]:
    """The dataset's ``device_transform(batch) -> batch``, if it declares one: what turns its
    collated batches into model inputs on the device. The core applies it to every batch of
    that dataset in every mode (training, evaluation, tools), after the move to the device and
    before INPUT.BATCH_TRANSFORMS."""
    fn = getattr(dataset, "device_transform", None)
    return fn if callable(fn) else None


def apply_device_transform(dataset, batch: dict) -> dict:
    """``batch`` through :func:`device_transform_of` ``(dataset)`` (unchanged when none)."""
    fn = device_transform_of(dataset)
    return fn(batch) if fn is not None else batch


def to_device(batch: dict, device, non_blocking: bool = True) -> dict:
    """Every tensor of ``batch`` on ``device``; other entries (names, lists) as they are."""
    return {
        k: (v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()
    }


def prepare_batch(
    batch: dict,
    device,
    dataset_transform: Optional[BatchFn] = None,
    transforms: Sequence[BatchFn] = (),
    non_blocking: bool = True,
) -> dict:
    """A collated batch as model input: on ``device``, through ``dataset_transform`` (the
    dataset's :func:`device_transform_of`), then through each of ``transforms`` in order."""
    batch = to_device(batch, device, non_blocking)
    if dataset_transform is not None:
        batch = dataset_transform(batch)
    for t in transforms:
        batch = t(batch)
    return batch


class BatchPreparer:
    """:func:`prepare_batch` bound to a device, a dataset (its ``device_transform``) and batch
    transforms: ``preparer(batch) -> model input``."""

    def __init__(
        self, device, dataset=None, transforms: Sequence[BatchFn] = (), dataset_transform: Optional[BatchFn] = None
    ) -> None:
        self.device = torch.device(device) if device is not None else None
        self.dataset_transform = dataset_transform if dataset_transform is not None else device_transform_of(dataset)
        self.transforms: List[BatchFn] = list(transforms)

    def __call__(self, batch: dict, non_blocking: bool = True) -> dict:
        return prepare_batch(batch, self.device, self.dataset_transform, self.transforms, non_blocking)


def is_empty(batch: dict) -> bool:
    """Whether a collated batch holds no readable item (bridle.data.items.skip_none_collate)."""
    return bool(batch.get("empty", False))


# ----------------------------------------------------------------------------- unreadable items
class BadItemAccounting:
    """Run-wide accounting of unreadable training items for one process.

    ``seen`` / ``bad`` count items read and items skipped, ``bad_items`` names the first 20
    skipped ones (each is logged once), ``empty_batches`` counts loader batches without a
    readable item: those are drawn on top of one batch per micro-step, so a loader rebuilt on
    resume (it starts at iterations x micro-steps) passes over as many again (:meth:`open`).
    :meth:`state_dict` is this process's entry of the checkpoint's ``rank_states``."""

    #: Names remembered so that each is logged once (the count itself is unbounded).
    max_logged = 100_000
    #: Names kept for messages.
    max_named = 20

    def __init__(self, max_bad_fraction: float = 0.01, min_items: int = 1000) -> None:
        self.max_bad_fraction = float(max_bad_fraction)
        self.min_items = int(min_items)
        self.seen = 0
        self.bad = 0
        self.bad_items: List[str] = []
        self.logged: set = set()
        self.empty_batches = 0

    # -- drawing batches
    def open(self, loader: Iterable[dict]) -> Iterator[dict]:
        """An iterator over ``loader`` past the empty batches drawn (and counted) before the
        checkpoint this run resumed from."""
        it = iter(loader)
        for _ in range(self.empty_batches):
            next(it)
        return it

    def next_batch(
        self,
        data_iter: Iterator[dict],
        dataset_size: Callable[[], int] = lambda: 0,
        put_scalar: Optional[Callable[[str, object], None]] = None,
    ) -> dict:
        """The next batch of ``data_iter`` that holds a readable item. Each batch's
        ``num_skipped`` is counted (and reported through ``put_scalar("data/skipped", n)``);
        ``dataset_size()`` bounds how many items must be read before the fraction is checked."""
        while True:
            batch = next(data_iter)
            skipped = batch.get("num_skipped")
            if skipped is not None:
                if put_scalar is not None:
                    put_scalar("data/skipped", skipped)
                self.count(batch, int(skipped), dataset_size)
            if not is_empty(batch):
                return batch
            self.empty_batches += 1

    def count(self, batch: dict, skipped: int, dataset_size: Callable[[], int] = lambda: 0) -> None:
        """Count one batch (``num_skipped`` is a host tensor: no device sync); raise
        :class:`BadDataError` when the skipped fraction exceeds ``max_bad_fraction``."""
        n_good = 0
        for v in batch.values():
            if isinstance(v, torch.Tensor) and v.dim() > 0:
                n_good = int(v.shape[0])
                break
        self.seen += n_good + skipped
        if not skipped:
            return
        self.bad += skipped
        for desc in batch.get("bad_items", []) or []:
            if desc not in self.logged:
                if len(self.logged) < self.max_logged:
                    self.logged.add(desc)
                if len(self.bad_items) < self.max_named:
                    self.bad_items.append(desc)
                logger.warning(f"Skipping unreadable training item {desc}")
        limit = self.max_bad_fraction
        size = dataset_size()
        min_items = min(self.min_items, size) if size else self.min_items
        if self.seen >= max(1, min_items) and self.bad > limit * self.seen:
            first = "; ".join(self.bad_items[:10]) or "(the dataset did not name them)"
            what = "Every training item" if self.bad == self.seen else f"{self.bad} of {self.seen} training items"
            raise BadDataError(
                f"{what} read so far could not be loaded ({self.bad / self.seen:.1%} > "
                f"DATALOADER.MAX_BAD_FRACTION {limit}). First unreadable items: {first}"
            )

    # -- checkpoint (the keys of a rank_states entry)
    def state_dict(self) -> dict:
        return {
            "empty_batches": self.empty_batches,
            "data_seen": self.seen,
            "data_bad": self.bad,
            "bad_items": list(self.bad_items),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (``{}``, from a checkpoint without one, starts afresh)."""
        self.empty_batches = int(state.get("empty_batches", 0))
        self.seen = int(state.get("data_seen", 0))
        self.bad = int(state.get("data_bad", 0))
        self.bad_items = [str(d) for d in state.get("bad_items", [])]
        self.logged = set(self.bad_items)  # every item named so far while bad_items is not full
