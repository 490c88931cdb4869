"""Class-balanced sampling (the AST-style "weighted sampler"), with or without replacement.

An item's weight is the sum, over its labels, of 1 / (number of items carrying that label), so
items of rare classes are drawn more often. Datasets expose the weights through
``dataset.sample_weights()`` (they may compute them with :func:`label_frequency_weights` or read
a precomputed file); the ``WeightedSampler`` entry of the SAMPLER registry draws from them.

Distributed use: every rank computes the same seeded draw of ``world_size * per_rank`` indices
for an epoch and keeps the positions ``rank, rank + world_size, ...``, so ranks consume disjoint
shards of one common draw without communicating. The stream is infinite, deterministic from
(seed, epoch), and ``start_index`` (indices this rank already consumed) resumes it exactly.

Without replacement (``replacement=False``, as the authors' AS-2M fine-tuning: torch's
WeightedRandomSampler with ``replacement=False``) an epoch's draw holds no index twice; it is
successive weighted draws without replacement, computed at once with Efraimidis-Spirakis keys
(``log(u) / w``, the largest ``samples_per_epoch`` keys in decreasing order), so it needs at
least ``samples_per_epoch`` items of positive weight.
"""

import math
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Sampler

from bridle.registry import SAMPLER
from bridle.utils import comm

__all__ = ["label_frequency_weights", "WeightedSampler", "build_weighted_sampler"]

LabelsLike = Union[torch.Tensor, np.ndarray, Sequence[Sequence[int]], Sequence[int]]


def label_frequency_weights(labels: LabelsLike, num_classes: Optional[int] = None) -> torch.Tensor:
    """Per-item weights ``sum_{c in labels(i)} 1 / count(c)`` as float64 ``[N]``.

    ``labels`` is one of: an integer vector ``[N]`` (single label per item; a negative value
    means "no label"), a multi-hot matrix ``[N, C]`` (nonzero = label present), or a list of
    per-item sequences of class indices. Items without any label get the smallest weight of
    the labelled items, so they are still drawn (AST would give them 0 and never draw them).
    """
    items = _to_index_lists(labels)
    n = len(items)
    if n == 0:
        raise ValueError("label_frequency_weights: no items.")
    flat = np.fromiter((c for it in items for c in it), dtype=np.int64)
    if flat.size and flat.min() < 0:
        raise ValueError("label_frequency_weights: negative class index in a label list.")
    c = int(num_classes) if num_classes is not None else (int(flat.max()) + 1 if flat.size else 0)
    if flat.size and flat.max() >= c:
        raise ValueError(f"label_frequency_weights: class index {int(flat.max())} >= num_classes {c}.")
    counts = np.bincount(flat, minlength=c).astype(np.float64)
    inv = np.zeros_like(counts)
    inv[counts > 0] = 1.0 / counts[counts > 0]
    lengths = np.fromiter((len(it) for it in items), dtype=np.int64, count=n)
    owner = np.repeat(np.arange(n), lengths)
    weights = np.bincount(owner, weights=inv[flat], minlength=n) if flat.size else np.zeros(n)
    unlabeled = lengths == 0
    if unlabeled.all():
        weights[:] = 1.0
    elif unlabeled.any():
        weights[unlabeled] = weights[~unlabeled].min()
    return torch.from_numpy(weights)


def _to_index_lists(labels: LabelsLike):
    if isinstance(labels, (torch.Tensor, np.ndarray)):
        arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels
        if arr.ndim == 1:
            if not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(
                    "label_frequency_weights: a 1-D label vector must hold integer class indices; "
                    f"got dtype {arr.dtype}."
                )
            return [[int(v)] if v >= 0 else [] for v in arr]
        if arr.ndim == 2:
            return [np.flatnonzero(row).tolist() for row in arr]
        raise ValueError(f"label_frequency_weights: labels must be [N] or [N, C]; got shape {arr.shape}.")
    return [[int(x)] if np.isscalar(x) else [int(v) for v in x] for x in labels]


class WeightedSampler(Sampler):
    """Infinite stream of this rank's indices drawn proportionally to ``weights``, with
    replacement (default) or without it within an epoch. One epoch is ``samples_per_epoch``
    draws in total (default: the dataset size), ``ceil(samples_per_epoch / world_size)`` of
    them on each rank."""

    def __init__(
        self,
        weights: Union[torch.Tensor, Sequence[float]],
        seed: int = 0,
        start_index: int = 0,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        samples_per_epoch: Optional[int] = None,
        replacement: bool = True,
    ) -> None:
        w = torch.as_tensor(weights, dtype=torch.float64).flatten()
        if w.numel() == 0:
            raise ValueError("WeightedSampler: the dataset's sample_weights() is empty.")
        if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError("WeightedSampler: sample weights must be finite, >= 0 and not all zero.")
        self.num_items = w.numel()
        self.cdf = torch.cumsum(w, 0)
        self.seed = int(seed)
        self.rank = comm.get_rank() if rank is None else int(rank)
        self.world_size = comm.get_world_size() if world_size is None else int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"WeightedSampler: rank {self.rank} not in [0, {self.world_size}).")
        if start_index < 0:
            raise ValueError(f"WeightedSampler: start_index must be >= 0; got {start_index}.")
        self.start_index = int(start_index)
        total = self.num_items if samples_per_epoch is None else int(samples_per_epoch)
        if total <= 0:
            raise ValueError(f"WeightedSampler: samples_per_epoch must be > 0; got {total}.")
        self.per_rank = math.ceil(total / self.world_size)
        self.replacement = bool(replacement)
        self.weights = w
        if not self.replacement and self.per_rank * self.world_size > int((w > 0).sum()):
            raise ValueError(
                f"WeightedSampler without replacement (DATALOADER.WEIGHTED_SAMPLER_REPLACEMENT False): an epoch "
                f"of {self.per_rank * self.world_size} draws ({total} samples per epoch over {self.world_size} "
                f"ranks) needs as many items of positive weight; the dataset has {int((w > 0).sum())}. "
                "Lower DATALOADER.SAMPLES_PER_EPOCH or draw with replacement."
            )

    def _generator(self, epoch: int) -> torch.Generator:
        state = np.random.SeedSequence([self.seed & 0xFFFFFFFF, epoch]).generate_state(2, dtype=np.uint32)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

    def global_draw(self, epoch: int) -> torch.Tensor:
        """The common draw of an epoch, identical on every rank: int64 ``[world * per_rank]``."""
        n = self.per_rank * self.world_size
        if not self.replacement:
            u = torch.rand(self.num_items, generator=self._generator(epoch), dtype=torch.float64)
            keys = torch.log(u.clamp_(min=1e-300)) / self.weights  # -inf for weight 0: never drawn
            return torch.topk(keys, n, sorted=True).indices
        u = torch.rand(n, generator=self._generator(epoch), dtype=torch.float64)
        idx = torch.searchsorted(self.cdf, u * self.cdf[-1], right=True)
        return idx.clamp_(max=self.num_items - 1)

    def epoch_indices(self, epoch: int) -> torch.Tensor:
        """This rank's shard of the epoch's draw: ``[per_rank]``."""
        return self.global_draw(epoch)[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start_index, self.per_rank)
        while True:
            yield from self.epoch_indices(epoch)[offset:].tolist()
            offset = 0
            epoch += 1


@SAMPLER.register(name="WeightedSampler")
def build_weighted_sampler(cfg, dataset, start_index: int = 0) -> WeightedSampler:
    weights_fn = getattr(dataset, "sample_weights", None)
    if not callable(weights_fn):
        raise TypeError(
            f"DATALOADER.SAMPLER_TRAIN = 'WeightedSampler' needs a dataset with sample_weights(); "
            f"the dataset of DATASETS.TRAIN ('{cfg.DATASETS.TRAIN}', {type(dataset).__name__}) has none."
        )
    weights = torch.as_tensor(weights_fn(), dtype=torch.float64)
    if weights.numel() != len(dataset):
        raise ValueError(
            f"{type(dataset).__name__}.sample_weights() returned {weights.numel()} weights for {len(dataset)} items."
        )
    # SEED < 0 draws from seed 0, as TrainingSampler (bridle/data/samplers.py): the stream must be
    # the same on every rank and again after a resume, which a fresh random seed would not be.
    seed = max(int(cfg.SEED), 0)
    total = int(cfg.DATALOADER.SAMPLES_PER_EPOCH) or None
    return WeightedSampler(
        weights,
        seed=seed,
        start_index=start_index,
        samples_per_epoch=total,
        replacement=bool(cfg.DATALOADER.WEIGHTED_SAMPLER_REPLACEMENT),
    )
