"""Data loaders: DATASET entry -> sampler -> DataLoader with a collate that skips bad items.

Training loaders are exactly reproducible: the sampler's order depends on (SEED, epoch), and
every item is loaded with python / numpy / torch seeded from (SEED, rank, position of the item
in this rank's stream) (:class:`SeededItems`), so random augmentations do not depend on the
loader workers, their RNG streams or where a run was resumed. The loader's own generator is
seeded too, so creating its iterator never draws from the global RNG."""

import contextlib
import logging
from typing import Callable, List, Optional

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, get_worker_info

from bridle.protocols import Dataset as DatasetContract
from bridle.protocols import NamesBadItems, ReportsLastFailure, ResumablePosition, check_contract, supports
from bridle.registry import DATASET, SAMPLER, TRANSFORM
from bridle.utils import comm
from bridle.utils.seed import derive_seed, seeded

from .batch import apply_device_transform, device_transform_of  # noqa: F401  (importable from here as before)
from .items import BadItem, skip_none_collate  # noqa: F401  (importable from here as before)
from .samplers import InferenceSampler

logger = logging.getLogger(__name__)


class SeededItems(Dataset):
    """Wraps a dataset for a training loader whose sampler yields ``(position, index)``:
    item ``index`` is loaded with every RNG seeded from (seed, position), and an unreadable
    item (``None``) comes back as a :class:`BadItem` naming it. In the main process the
    global RNG states are restored after each item (the training step owns them)."""

    def __init__(self, dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        pos, idx = key if isinstance(key, tuple) else (None, key)
        # In the main process the training step owns the global RNG states: put them back.
        ctx = (
            seeded(derive_seed(self.seed, pos), restore=get_worker_info() is None)
            if pos is not None
            else contextlib.nullcontext()
        )
        with ctx:
            reports = supports(self.dataset, ReportsLastFailure)
            if reports:
                self.dataset.last_failure = None
            item = self.dataset[idx]
        if item is None:
            failure = self.dataset.last_failure if reports else None
            return BadItem(
                idx, f"{failure[0]} ({failure[1]})" if failure else f"index {idx} of {type(self.dataset).__name__}"
            )
        return item


class _PositionedSampler(Sampler):
    """Yields ``(start + k, index)`` for the k-th index of ``sampler``."""

    def __init__(self, sampler, start: int) -> None:
        self.sampler, self.start = sampler, int(start)

    def __iter__(self):
        for k, idx in enumerate(self.sampler):
            yield (self.start + k, idx)


def build_dataset(cfg, name: str, split: str, mode: str):
    if not name:
        from bridle.config.config import ConfigValueError

        raise ConfigValueError(f"No dataset configured for split '{split}' (set DATASETS.{split.upper()}).")
    dataset = DATASET.get(name)(cfg, split, mode)
    where = DATASET.label(name, f"split '{split}', mode '{mode}'")
    if dataset is None:
        raise TypeError(f"{where} returned None; a DATASET builder must return a torch Dataset.")
    check_contract(dataset, DatasetContract, where)
    try:
        size = len(dataset)
    except TypeError as e:  # __len__ missing or not returning an int (e.g. None / `...`)
        raise TypeError(
            f"{where} returned a {type(dataset).__name__} whose __len__ does not give an int "
            f"({e}); __len__ must return the number of items as an int."
        ) from None
    if size < 0:
        raise ValueError(f"{where}: __len__ returned {size}; expected the number of items (>= 0).")
    return dataset


def _loader_kwargs(cfg) -> dict:
    workers = int(cfg.DATALOADER.NUM_WORKERS)
    kw = dict(
        num_workers=workers,
        collate_fn=skip_none_collate,
        pin_memory=bool(cfg.DATALOADER.PIN_MEMORY) and torch.cuda.is_available(),
    )
    if workers > 0:
        kw.update(persistent_workers=True, prefetch_factor=int(cfg.DATALOADER.PREFETCH_FACTOR))
    return kw


def build_train_loader(cfg, dataset, start_iter: int = 0) -> DataLoader:
    """An infinite loader; ``start_iter`` resumes the sample order, and the per-item random
    draws (:class:`SeededItems`), where they stopped."""
    per_step = int(cfg.SOLVER.BATCH_SIZE_PER_GPU)
    consumed = start_iter * per_step * int(cfg.SOLVER.ACCUM_STEPS)
    if isinstance(dataset, IterableDataset):  # streaming ("shards"): orders, splits, seeds, resumes itself
        return build_stream_loader(cfg, dataset, consumed, per_step, _loader_kwargs(cfg))
    sampler = SAMPLER.get(cfg.DATALOADER.SAMPLER_TRAIN)(cfg, dataset, consumed)
    seed, rank = max(int(cfg.SEED), 0), comm.get_rank()
    items = SeededItems(dataset, derive_seed(seed, "items", rank))
    gen = torch.Generator().manual_seed(derive_seed(seed, "loader", rank, start_iter))
    return DataLoader(
        items,
        batch_size=per_step,
        sampler=_PositionedSampler(sampler, consumed),
        drop_last=True,
        generator=gen,
        **_loader_kwargs(cfg),
    )


def build_stream_loader(
    cfg, dataset: IterableDataset, consumed: int, batch_size: int, loader_kwargs: dict, train: bool = True
) -> DataLoader:
    """DataLoader of a streaming dataset: no sampler (the dataset orders, splits and resumes
    itself); ``consumed`` samples of this rank are skipped."""
    if train and supports(dataset, ResumablePosition):
        dataset.set_start(consumed, batch_size)
    if supports(dataset, NamesBadItems):
        dataset.name_bad_items = True
    if train and cfg.DATALOADER.SAMPLER_TRAIN not in ("TrainingSampler", ""):
        raise ValueError(
            f"DATALOADER.SAMPLER_TRAIN '{cfg.DATALOADER.SAMPLER_TRAIN}' needs a map-style dataset; the "
            f"streaming dataset {type(dataset).__name__} shuffles itself (DATASETS.SHARDS.SHUFFLE_BUFFER): "
            "set DATALOADER.SAMPLER_TRAIN TrainingSampler."
        )
    kw = dict(loader_kwargs)
    kw.pop("sampler", None)
    # Own generator: creating the loader's iterator must not draw from the global RNG (the
    # training step's), or a resumed run would diverge from an uninterrupted one.
    kw.setdefault(
        "generator",
        torch.Generator().manual_seed(derive_seed(max(int(cfg.SEED), 0), "stream-loader", comm.get_rank(), consumed)),
    )
    return DataLoader(dataset, batch_size=batch_size, drop_last=train, **kw)


def build_test_loader(cfg, dataset, batch_size: Optional[int] = None) -> DataLoader:
    if isinstance(dataset, IterableDataset):  # streaming: each rank/worker reads its own shards
        return build_stream_loader(
            cfg, dataset, 0, batch_size or int(cfg.TEST.BATCH_SIZE_PER_GPU), _loader_kwargs(cfg), train=False
        )
    return DataLoader(
        dataset,
        batch_size=batch_size or int(cfg.TEST.BATCH_SIZE_PER_GPU),
        sampler=InferenceSampler(len(dataset)),
        drop_last=False,
        **_loader_kwargs(cfg),
    )


def build_batch_transforms(cfg, mode: str) -> List[Callable[[dict], dict]]:
    """The TRANSFORM entries of INPUT.BATCH_TRANSFORMS, each ``fn(cfg, mode)`` -> callable(batch) -> batch."""
    out = []
    for name in cfg.INPUT.BATCH_TRANSFORMS:
        t = TRANSFORM.get(name)(cfg, mode)
        if not callable(t):
            raise TypeError(
                f"TRANSFORM entry '{name}' (INPUT.BATCH_TRANSFORMS, registered by {TRANSFORM.origin(name)}) "
                f"returned {type(t).__name__}; fn(cfg, mode) must return a callable(batch dict) -> batch dict."
            )
        out.append(t)
    return out


def iters_per_epoch(cfg, dataset_len: int) -> int:
    batch = int(cfg.SOLVER.BATCH_SIZE_PER_GPU) * comm.get_world_size() * int(cfg.SOLVER.ACCUM_STEPS)
    return max(1, dataset_len // batch)
