"""The core "shards" DATASET: a stream over the samples of a shard index (docs/data.md describes
the order, the split over ranks and loader workers, and resume)."""

import json
import logging
import math
import os
import tarfile
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from bridle.config.config import ConfigValueError
from bridle.errors import missing_file
from bridle.protocols import PrimedDecoder, supports
from bridle.registry import DATASET, SAMPLE_DECODER
from bridle.utils import comm
from bridle.utils.seed import derive_seed, seeded

from ..items import BadItem
from ..robust import RobustItemsMixin, check_mode
from .index import INDEX_NAME, SIDECAR_SUFFIX, read_index, scan_tar

__all__ = ["ShardedDataset", "build_shards", "shuffle_order"]

logger = logging.getLogger(__name__)

_SPLIT_KEYS = {"train": "TRAIN_INDEX", "val": "VAL_INDEX", "test": "TEST_INDEX"}


# ----------------------------------------------------------------------------- order
def shuffle_order(n: int, buffer_size: int, rng: Optional[np.random.Generator]) -> List[int]:
    """Output order of a shuffle buffer over a stream ``0..n-1``: each read fills the buffer;
    once it holds ``buffer_size`` samples a random one is emitted; at the end it drains in random
    order. ``rng None`` or ``buffer_size <= 1``: the stream order. Every index appears once, and
    index ``i`` is never emitted before the stream reached it (bounded memory)."""
    if rng is None or buffer_size <= 1 or n <= 1:
        return list(range(n))
    out: List[int] = []
    buf: List[int] = []
    draws = rng.random(n + 1)
    d = 0
    for i in range(n):
        buf.append(i)
        if len(buf) >= buffer_size:
            j = int(draws[d] * len(buf))
            d += 1
            out.append(buf[j])
            buf[j] = buf[-1]
            buf.pop()
    order = rng.permutation(len(buf)).tolist()
    out.extend(buf[j] for j in order)
    return out


class _Part:
    __slots__ = ("shard", "part", "parts", "count")

    def __init__(self, shard: int, part: int, parts: int, num: int) -> None:
        self.shard, self.part, self.parts = shard, part, parts
        self.count = len(range(part, num, parts))


# ----------------------------------------------------------------------------- the dataset
class ShardedDataset(RobustItemsMixin, IterableDataset):
    """Streams the samples of a shard index through ``decoder`` (order, split and resume: docs/data.md).

    ``train``: infinite, shards permuted per epoch and a shuffle buffer; otherwise one pass in
    index order. ``rank`` / ``world_size`` default to the process group's. Random access
    (``dataset[i]``) also works -- slowly, by scanning tar headers (used for one batch of
    codebook initialisation, or tools that index a dataset)."""

    def __init__(
        self,
        index: dict,
        decoder: Callable[[Dict[str, bytes]], Any],
        train: bool,
        seed: int = 0,
        buffer_size: int = 1000,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        name: str = "shards",
    ) -> None:
        self.index = index
        self.paths: List[str] = list(index["paths"])
        self.counts: List[int] = [int(s["num_samples"]) for s in index["shards"]]
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.meta = dict(index.get("meta", {}))
        self.num_classes = self.meta.get("num_classes")
        self.decoder = decoder
        self.train = bool(train)
        self.seed = int(seed)
        self.buffer_size = int(buffer_size)
        self._rank, self._world = rank, world_size
        self.name = name
        self._start_batches = 0
        self._batch_size = 1
        self._headers: Dict[int, List[List[Tuple[str, int, int]]]] = {}
        self.worker_override: Optional[Tuple[int, int]] = None
        #: Return a bridle.data.items.BadItem naming an unreadable sample instead of None
        #: (set by the training loader; the collate counts both).
        self.name_bad_items = False

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def device_transform(self):
        """The decoder's batch transform on the device, if it has one (e.g. features computed on
        the device from the raw samples the decoder returns); see bridle.data.batch.prepare_batch."""
        return getattr(self.decoder, "device_transform", None)

    # -- resume
    def set_start(self, consumed: int, batch_size: int) -> None:
        """This rank already consumed ``consumed`` samples in batches of ``batch_size``."""
        if batch_size <= 0:
            raise ValueError(f"ShardedDataset.set_start: batch_size must be > 0; got {batch_size}.")
        self._batch_size = int(batch_size)
        self._start_batches = int(consumed) // int(batch_size)

    # -- who am I
    def _slot(self) -> Tuple[int, int, int, int]:
        rank = comm.get_rank() if self._rank is None else int(self._rank)
        world = comm.get_world_size() if self._world is None else int(self._world)
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        if self.worker_override is not None:  # tests: simulate loader worker (id, num_workers)
            wid, nw = self.worker_override
        return rank, world, wid, nw

    def _parts(self, epoch: int, num_slots: int) -> List[_Part]:
        n = len(self.paths)
        order = (
            np.random.default_rng(derive_seed(self.seed, "shards", epoch)).permutation(n).tolist()
            if self.train
            else list(range(n))
        )
        k = max(1, math.ceil(num_slots / n))
        return [_Part(s, p, k, self.counts[s]) for s in order for p in range(k)]

    def _slot_parts(self, epoch: int, slot: int, num_slots: int) -> List[_Part]:
        return [u for i, u in enumerate(self._parts(epoch, num_slots)) if i % num_slots == slot]

    def _order(self, epoch: int, slot: int, n: int) -> List[int]:
        rng = np.random.default_rng(derive_seed(self.seed, "buffer", epoch, slot)) if self.train else None
        return shuffle_order(n, self.buffer_size, rng)

    # -- reading
    def _read_part(self, u: _Part) -> Iterator[Optional[Dict[str, bytes]]]:
        """The samples of part ``u`` in shard order; ``None`` for each one that cannot be read
        (the count always matches the index)."""
        import webdataset as wds

        path, want = self.paths[u.shard], range(u.part, self.counts[u.shard], u.parts)
        got = 0
        err: Optional[BaseException] = None
        try:
            with open(path, "rb") as f:
                files = wds.tariterators.tar_file_iterator(f)
                for j, sample in enumerate(wds.tariterators.group_by_keys(({"__url__": path, **s} for s in files))):
                    if j >= self.counts[u.shard]:
                        break
                    if j % u.parts == u.part:
                        sample.pop("__url__", None)
                        yield sample
                        got += 1
        except (OSError, EOFError, ValueError, tarfile.TarError) as e:
            err = e
        missing = len(want) - got
        if missing > 0:
            exc = err or EOFError(f"shard has {got * u.parts + u.part} samples, the index says {self.counts[u.shard]}")
            logger.warning(
                "%s: shard '%s' is unreadable after %d of its samples (%s: %s); %d samples skipped.",
                self.name,
                path,
                got,
                type(exc).__name__,
                exc,
                missing,
            )
            for _ in range(missing):
                yield None

    def _epoch_stream(self, epoch: int, slot: int, num_slots: int, start: int) -> Iterator[Tuple[Any, Any]]:
        """(key, raw sample or None) of this slot's epoch, from output position ``start``."""
        parts = self._slot_parts(epoch, slot, num_slots)
        n = sum(u.count for u in parts)
        order = self._order(epoch, slot, n)
        if start >= n:
            return
        done = set(order[:start])
        first = min(order[start:])
        pending: Dict[int, Any] = {}
        k = start
        local = 0
        for u in parts:
            if local + u.count <= first:  # entirely consumed before the resume point: never opened
                local += u.count
                continue
            for j, raw in enumerate(self._read_part(u)):
                i = local + j
                if i not in done:
                    key = f"{self.paths[u.shard]}#{u.part + j * u.parts}"
                    pending[i] = (key, raw)
                while k < n and order[k] in pending:
                    yield pending.pop(order[k])
                    k += 1
            local += u.count
        while k < n:  # unreachable unless a part yielded fewer samples than counted
            yield pending.pop(order[k], (f"epoch {epoch} position {k}", None))
            k += 1

    def _bad(self, key: str, exc: BaseException):
        self.record_failure(key, exc)
        if self.name_bad_items:  # the training loader names skipped samples (DATALOADER.MAX_BAD_FRACTION)
            return BadItem(key, f"{key} ({type(exc).__name__}: {exc})")
        return None

    def _decode(self, key: str, raw: Optional[Dict[str, bytes]]) -> Optional[dict]:
        if raw is None:
            if supports(self.decoder, PrimedDecoder):
                self.decoder.prime(None)  # the next sample's predecessor is missing
            return self._bad(key, EOFError("sample missing from its shard"))
        try:
            item = self.decoder(raw)
        except self.load_errors as e:
            return self._bad(key, e)
        if item is None:
            return self._bad(key, ValueError("the decoder could not read it"))
        return item

    def _seeded_decode(self, key, raw, seed: Optional[int]) -> Optional[dict]:
        if seed is None:
            return self._decode(key, raw)
        # In the main process the training step owns the global RNG states: put them back.
        with seeded(seed, restore=get_worker_info() is None):
            return self._decode(key, raw)

    def slot_epoch_sizes(self, epoch: int, num_slots: int) -> List[int]:
        counts = [0] * num_slots
        for i, u in enumerate(self._parts(epoch, num_slots)):
            counts[i % num_slots] += u.count
        return counts

    def __iter__(self) -> Iterator[Optional[dict]]:
        rank, world, wid, nw = self._slot()
        num_slots = world * nw
        if not self.train:
            for key, raw in self._epoch_stream(0, rank * nw + wid, num_slots, 0):
                yield self._decode(key, raw)
            return
        if len(self) == 0:
            raise ValueError(f"{self.name}: the shard index '{self.index.get('path')}' has no samples.")
        # A new loader starts its round robin at worker 0, which must produce this rank's batch B
        # (the first not yet consumed): worker `wid` plays the role of the original worker
        # (wid + B) % nw, whose first B batches are already consumed.
        b0 = self._start_batches
        role = (wid + b0) % nw
        done_batches = max(0, -(-(b0 - role) // nw))
        slot = rank * nw + role
        consumed = done_batches * self._batch_size
        epoch, empty = 0, 0
        while True:
            size = self.slot_epoch_sizes(epoch, num_slots)[slot]
            empty = empty + 1 if size == 0 else 0
            if empty > len(self.paths) + 1:
                raise ValueError(
                    f"{self.name}: loader slot {slot} of {num_slots} (rank {rank}, worker {role}) gets no "
                    f"samples: {len(self)} samples are too few for {world} ranks x {nw} workers."
                )
            if consumed < size:
                break
            consumed -= size
            epoch += 1
        if supports(self.decoder, PrimedDecoder) and (epoch or consumed):
            self.decoder.prime(self._previous_raw(epoch, slot, num_slots, consumed))
        item_seed = derive_seed(self.seed, "items", rank)
        batch_no, in_batch = b0 + wid, 0  # this rank's batch number of the next batch of this worker
        pos_in_epoch, empty = consumed, 0
        while True:
            got = 0
            for key, raw in self._epoch_stream(epoch, slot, num_slots, pos_in_epoch):
                got += 1
                pos = batch_no * self._batch_size + in_batch  # position in this rank's stream
                yield self._seeded_decode(key, raw, derive_seed(item_seed, pos))
                in_batch += 1
                if in_batch == self._batch_size:
                    in_batch, batch_no = 0, batch_no + nw
            empty = empty + 1 if got == 0 else 0
            if empty > len(self.paths) + 1:
                raise ValueError(
                    f"{self.name}: loader slot {slot} of {num_slots} (rank {rank}, worker {role}) gets no "
                    f"samples: {len(self)} samples are too few for {world} ranks x {nw} workers."
                )
            epoch, pos_in_epoch = epoch + 1, 0

    def _previous_raw(self, epoch: int, slot: int, num_slots: int, pos: int) -> Optional[Dict[str, bytes]]:
        """The raw sample before position ``pos`` of ``epoch`` in ``slot``'s stream (the last one
        of the latest earlier epoch that has any when ``pos`` is 0); None if there is none."""
        while pos == 0:
            epoch -= 1
            if epoch < 0:
                return None
            pos = self.slot_epoch_sizes(epoch, num_slots)[slot]
        return next(self._epoch_stream(epoch, slot, num_slots, pos - 1), (None, None))[1]

    # -- random access (slow path)
    def _shard_headers(self, s: int) -> List[List[Tuple[str, int, int]]]:
        if s not in self._headers:
            sidecar = self.paths[s] + SIDECAR_SUFFIX
            headers = None
            if os.path.isfile(sidecar):
                try:
                    with open(sidecar, encoding="utf-8") as f:
                        headers = [[(str(e), int(o), int(n)) for e, o, n in sample] for sample in json.load(f)]
                except (OSError, ValueError, TypeError):
                    headers = None  # unreadable sidecar: scan the tar headers instead
            if headers is None or len(headers) != self.counts[s]:
                headers = scan_tar(self.paths[s])
            self._headers[s] = headers
        return self._headers[s]

    def raw_sample(self, index: int) -> Dict[str, bytes]:
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range [0, {len(self)})")
        s = int(np.searchsorted(self.offsets, index, side="right") - 1)
        j = int(index - self.offsets[s])
        members = self._shard_headers(s)[j]
        sample: Dict[str, bytes] = {"__key__": f"{index:09d}"}
        with open(self.paths[s], "rb") as f:
            for ext, off, size in members:
                f.seek(off)
                sample[ext] = f.read(size)
        return sample

    def __getitem__(self, index: int) -> Optional[dict]:
        index = int(index)
        key = f"{self.paths[int(np.searchsorted(self.offsets, index, side='right') - 1)]}#{index}"
        try:
            raw = self.raw_sample(index)
        except (OSError, EOFError, ValueError, tarfile.TarError, IndexError) as e:
            if isinstance(e, IndexError):
                raise
            return self._bad(key, e)
        return self._decode(key, raw)


@DATASET.register(name="shards")
def build_shards(cfg, split: str, mode: str) -> ShardedDataset:
    """WebDataset shards of DATASETS.SHARDS.<SPLIT>_INDEX, decoded by DATASETS.SHARDS.DECODER
    (or the decoder named in the index)."""
    check_mode(mode, "DATASET 'shards'")
    if split not in _SPLIT_KEYS:
        raise ValueError(f"DATASET 'shards': split must be one of {list(_SPLIT_KEYS)}; got '{split}'.")
    key = _SPLIT_KEYS[split]
    path = str(cfg.DATASETS.SHARDS[key])
    if not path:
        raise ConfigValueError(
            f"DATASET 'shards', split '{split}': DATASETS.SHARDS.{key} is empty; set it to the "
            "index.json written by tools/make_shards.py."
        )
    index_file = os.path.join(path, INDEX_NAME) if os.path.isdir(path) else path
    if not os.path.isfile(index_file):
        raise missing_file(
            f"DATASETS.SHARDS.{key}", index_file, "(expected the index.json tools/make_shards.py writes)"
        )
    index = read_index(path)
    name = str(cfg.DATASETS.SHARDS.DECODER) or index["decoder"]
    if not name:
        raise ValueError(f"Shard index '{index['path']}' names no decoder; set DATASETS.SHARDS.DECODER.")
    decoder = SAMPLE_DECODER.get(name)(cfg, mode, index["meta"])
    buffer = int(cfg.DATASETS.SHARDS.SHUFFLE_BUFFER)
    if buffer < 0:
        raise ValueError(f"DATASETS.SHARDS.SHUFFLE_BUFFER must be >= 0; got {buffer}.")
    train = split == "train" and mode != "eval"
    return ShardedDataset(
        index, decoder, train=train, seed=max(int(cfg.SEED), 0), buffer_size=buffer, name=f"shards:{split}"
    )
