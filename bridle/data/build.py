"""Data loaders: DATASET entry -> sampler -> DataLoader with a collate that skips bad items."""
import logging
from typing import Callable, List, Optional

import torch
from torch.utils.data import DataLoader, default_collate

from bridle.registry import DATASET, SAMPLER, TRANSFORM
from bridle.utils import comm

from .samplers import InferenceSampler

logger = logging.getLogger(__name__)


def skip_none_collate(items: List[Optional[dict]]) -> dict:
    """Collate item dicts, dropping ``None`` (unreadable) items; ``num_skipped`` counts them."""
    good = [it for it in items if it is not None]
    skipped = len(items) - len(good)
    if not good:
        return {"num_skipped": torch.tensor(skipped), "empty": True}
    batch = default_collate(good)
    batch["num_skipped"] = torch.tensor(skipped)
    return batch


def build_dataset(cfg, name: str, split: str, mode: str):
    if not name:
        raise ValueError(f"No dataset configured for split '{split}' (set DATASETS.{split.upper()}).")
    return DATASET.get(name)(cfg, split, mode)


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
    """An infinite loader; ``start_iter`` resumes the sample order where it stopped."""
    per_step = int(cfg.SOLVER.BATCH_SIZE_PER_GPU)
    consumed = start_iter * per_step * int(cfg.SOLVER.ACCUM_STEPS)
    sampler = SAMPLER.get(cfg.DATALOADER.SAMPLER_TRAIN)(cfg, dataset, consumed)
    return DataLoader(dataset, batch_size=per_step, sampler=sampler, drop_last=True, **_loader_kwargs(cfg))


def build_test_loader(cfg, dataset, batch_size: Optional[int] = None) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size or int(cfg.TEST.BATCH_SIZE_PER_GPU),
        sampler=InferenceSampler(len(dataset)),
        drop_last=False,
        **_loader_kwargs(cfg),
    )


def build_batch_transforms(cfg, mode: str) -> List[Callable[[dict], dict]]:
    return [TRANSFORM.get(name)(cfg, mode) for name in cfg.INPUT.BATCH_TRANSFORMS]


def iters_per_epoch(cfg, dataset_len: int) -> int:
    batch = int(cfg.SOLVER.BATCH_SIZE_PER_GPU) * comm.get_world_size() * int(cfg.SOLVER.ACCUM_STEPS)
    return max(1, dataset_len // batch)
