"""Samplers: sharded across ranks, deterministic from the seed, resumable mid-epoch."""

import math
from typing import Iterator, Optional

import torch
from torch.utils.data import Sampler

from bridle.registry import SAMPLER
from bridle.utils import comm
from bridle.utils.seed import derive_seed  # noqa: F401  (its home; importable from here as before)


class TrainingSampler(Sampler):
    """Infinite stream of indices: epoch ``e`` is a permutation drawn from ``seed + e``;
    rank ``r`` takes positions ``r, r + world, ...`` of the concatenated stream. Starting
    at ``start_index`` (the number of indices this rank already consumed) continues the
    exact same order after a resume."""

    def __init__(
        self,
        size: int,
        shuffle: bool = True,
        seed: int = 0,
        start_index: int = 0,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ) -> None:
        if size <= 0:
            raise ValueError("TrainingSampler: the training dataset is empty.")
        self.size = size
        self.shuffle = shuffle
        self.seed = int(seed)
        self.start_index = int(start_index)
        self.rank = comm.get_rank() if rank is None else rank
        self.world_size = comm.get_world_size() if world_size is None else world_size

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.size)
        g = torch.Generator()
        g.manual_seed(self.seed + epoch)
        return torch.randperm(self.size, generator=g)

    def __iter__(self) -> Iterator[int]:
        global_start = self.start_index * self.world_size + self.rank
        epoch, offset = divmod(global_start, self.size)
        pos = offset
        while True:
            order = self._epoch_order(epoch).tolist()
            while pos < self.size:
                yield order[pos]
                pos += self.world_size
            pos -= self.size
            epoch += 1


class InferenceSampler(Sampler):
    """Each rank gets a contiguous, non-overlapping slice of ``range(size)``."""

    def __init__(self, size: int) -> None:
        rank, world = comm.get_rank(), comm.get_world_size()
        shard = int(math.ceil(size / world))
        self.indices = list(range(min(rank * shard, size), min((rank + 1) * shard, size)))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


@SAMPLER.register(name="TrainingSampler")
def build_training_sampler(cfg, dataset, start_index: int = 0):
    return TrainingSampler(len(dataset), shuffle=True, seed=max(cfg.SEED, 0), start_index=start_index)
