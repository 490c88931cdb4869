"""Sharded datasets: WebDataset tar shards read as a stream (the core "shards" DATASET).

On a cluster file system a million small files are the bottleneck; a few thousand tar files
read sequentially are not. ``tools/make_shards.py`` writes the shards and their index; this
module reads them. It knows nothing about the data: each sample is a dict of raw bytes
(``{"__key__": "000000042", "<ext>": bytes, ...}``, the WebDataset layout) that a
``SAMPLE_DECODER`` entry of a plugin turns into an item with that plugin's own decode and
transform (``fn(cfg, mode, meta) -> callable(sample) -> item or None``).

Index (``index.json`` next to the shards)::

    {"format": "bridle-shards", "version": 1, "decoder": "<SAMPLE_DECODER entry>",
     "meta": {...decoder metadata, e.g. num_classes...},
     "num_samples": N, "shards": [{"name": "shard-000000.tar", "num_samples": n0}, ...]}

Each shard may have a sidecar ``<shard>.idx.json`` (member offsets of every sample, written with
the shard) that makes random access ``dataset[i]`` one seek; without it the tar headers are scanned.

Order (deterministic given SEED, epoch and position):

* A *slot* is one (rank, loader worker); there are ``world_size * num_workers`` of them.
* Epoch ``e``: the shards are permuted with (seed, e) (training only). Each shard is cut into
  ``ceil(slots / num_shards)`` interleaved parts (1 when there are enough shards); part ``u`` of
  the epoch's list goes to slot ``u % slots``. Every sample is read by exactly one slot per epoch.
* A slot reads its parts in order and passes them through a shuffle buffer of
  ``DATASETS.SHARDS.SHUFFLE_BUFFER`` samples driven by (seed, e, slot) (training only).
* The DataLoader takes batches round-robin from its workers, so after ``B`` batches of a rank,
  worker ``w`` has produced ``ceil((B - w) / num_workers)`` of them: resume (``set_start``)
  recomputes every slot's (epoch, position) from the iteration and skips, without decoding,
  what was consumed. Resuming needs the same world size, NUM_WORKERS and batch size.
* Each item is decoded with python / numpy / torch seeded from (seed, rank, its position in
  the rank's stream), so random augmentations are the same after a resume.

An unreadable sample (decoder error, a truncated shard, a missing shard file) is returned as
``None``: the loader's collate drops it and counts it, as for one-file-per-sample datasets.
"""
import hashlib
import io
import json
import logging
import math
import os
import random
import tarfile
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Type

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from bridle.config.config import ConfigValueError
from bridle.errors import MissingFileError, missing_file
from bridle.registry import DATASET, SAMPLE_DECODER
from bridle.utils import comm

from .robust import RobustItemsMixin, check_mode

__all__ = [
    "INDEX_FORMAT",
    "ShardSink",
    "ShardedDataset",
    "build_stream_loader",
    "decode_tensor_sample",
    "encode_tensor_item",
    "read_index",
    "shuffle_order",
]

logger = logging.getLogger(__name__)

INDEX_FORMAT = "bridle-shards"
INDEX_VERSION = 1
INDEX_NAME = "index.json"
_SPLIT_KEYS = {"train": "TRAIN_INDEX", "val": "VAL_INDEX", "test": "TEST_INDEX"}


def _seed(*keys) -> int:
    """A seed in [0, 2**31) from ``keys``, identical in every process and run."""
    text = repr(tuple(keys)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") % (2**31)


# ----------------------------------------------------------------------------- index + writing
def read_index(path: str) -> dict:
    """Load and check a shard index; shard paths are resolved against its directory."""
    if os.path.isdir(path):
        path = os.path.join(path, INDEX_NAME)
    if not os.path.isfile(path):
        raise MissingFileError(f"Shard index '{path}' does not exist (tools/make_shards.py writes it).")
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"Shard index '{path}' is not readable JSON: {e}") from e
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise ValueError(f"Shard index '{path}': expected a JSON object with \"format\": \"{INDEX_FORMAT}\".")
    shards = index.get("shards")
    if not isinstance(shards, list) or not shards:
        raise ValueError(f"Shard index '{path}': \"shards\" must be a non-empty list.")
    root = os.path.dirname(os.path.abspath(path))
    for i, s in enumerate(shards):
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not isinstance(s.get("num_samples"), int) \
                or s["num_samples"] < 0:
            raise ValueError(
                f"Shard index '{path}': shards[{i}] must be {{\"name\": str, \"num_samples\": int >= 0}}; got {s!r}."
            )
    total = sum(s["num_samples"] for s in shards)
    if int(index.get("num_samples", total)) != total:
        raise ValueError(f"Shard index '{path}': num_samples {index['num_samples']} != sum over shards {total}.")
    index["num_samples"] = total
    index["path"] = path
    index["paths"] = [s["name"] if os.path.isabs(s["name"]) else os.path.join(root, s["name"]) for s in shards]
    index.setdefault("meta", {})
    index.setdefault("decoder", "")
    return index


def scan_tar(path: str) -> List[List[Tuple[str, int, int]]]:
    """Per sample (WebDataset grouping: members sharing the name up to the first dot), its
    members ``(ext, data offset, size)``, from the tar headers only (no data is read)."""
    samples: List[List[Tuple[str, int, int]]] = []
    last = None
    with tarfile.open(path, "r:") as tar:
        for m in tar:
            if not m.isreg():
                continue
            key, _, ext = os.path.basename(m.name).partition(".")
            if key != last:
                samples.append([])
                last = key
            samples[-1].append((ext.lower(), m.offset_data, m.size))
    return samples


SIDECAR_SUFFIX = ".idx.json"


class ShardSink:
    """Writes samples (dicts of bytes) into ``out_dir/<prefix>-%06d.tar`` with WebDataset's
    TarWriter, a new shard every ``max_count`` samples or ``max_bytes`` bytes, then the index.

    Sample keys are the running sample number (``%09d``), so a sample's key is its position in
    the dataset; fields are ``{ext: bytes}`` (``json`` for labels/metadata)."""

    def __init__(self, out_dir: str, decoder: str, meta: Optional[dict] = None, prefix: str = "shard",
                 max_count: int = 1000, max_bytes: int = 1 << 30) -> None:
        import webdataset as wds  # only the writer needs the package

        if max_count <= 0 or max_bytes <= 0:
            raise ValueError(f"ShardSink: max_count and max_bytes must be > 0; got {max_count}, {max_bytes}.")
        self._wds = wds
        self.out_dir = out_dir
        self.decoder, self.meta, self.prefix = decoder, dict(meta or {}), prefix
        self.max_count, self.max_bytes = int(max_count), int(max_bytes)
        os.makedirs(out_dir, exist_ok=True)
        self.shards: List[dict] = []
        self._writer = None
        self._count = self._bytes = 0
        self.num_samples = 0

    def _open(self) -> None:
        name = f"{self.prefix}-{len(self.shards):06d}.tar"
        self._tmp = os.path.join(self.out_dir, name + ".tmp")
        self._final = os.path.join(self.out_dir, name)
        self._writer = self._wds.TarWriter(self._tmp, encoder=False, mtime=0.0)
        self.shards.append({"name": name, "num_samples": 0})
        self._count = self._bytes = 0

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            # sidecar: member offsets of every sample, for fast random access (dataset[i])
            with open(self._final + SIDECAR_SUFFIX, "w", encoding="utf-8") as f:
                json.dump(scan_tar(self._tmp), f, separators=(",", ":"))
            os.replace(self._tmp, self._final)
            self._writer = None

    def write(self, fields: Dict[str, bytes]) -> str:
        """Append one sample; returns its key."""
        size = sum(len(v) for v in fields.values())
        if self._writer is None or self._count >= self.max_count or (self._count and self._bytes + size > self.max_bytes):
            self._close_shard()
            self._open()
        key = f"{self.num_samples:09d}"
        sample = {"__key__": key}
        for ext, value in fields.items():
            if not isinstance(value, (bytes, bytearray)):
                raise TypeError(f"ShardSink.write: field '{ext}' must be bytes; got {type(value).__name__}.")
            sample[ext] = bytes(value)
        self._writer.write(sample)
        self._count += 1
        self._bytes += size
        self.shards[-1]["num_samples"] += 1
        self.num_samples += 1
        return key

    def close(self) -> str:
        """Finish the last shard and write ``index.json``; returns its path."""
        self._close_shard()
        if not self.num_samples:
            raise ValueError(f"ShardSink: no samples were written to '{self.out_dir}'.")
        index = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "decoder": self.decoder, "meta": self.meta,
                 "num_samples": self.num_samples, "shards": self.shards}
        path = os.path.join(self.out_dir, INDEX_NAME)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(index, f, indent=1)
        os.replace(tmp, path)
        return path


# ----------------------------------------------------------------------------- generic tensors
def encode_tensor_item(item: Dict[str, Any]) -> Dict[str, bytes]:
    """A dataset item (dict of tensors / numbers) as sample fields: each tensor as
    ``<name>.npy``, everything else in ``json``. Read back by the "tensors" decoder."""
    fields: Dict[str, bytes] = {}
    plain: Dict[str, Any] = {}
    for name, value in item.items():
        if "." in name or name.startswith("__"):
            raise ValueError(f"encode_tensor_item: item key '{name}' cannot be a shard field name.")
        if isinstance(value, torch.Tensor):
            buf = io.BytesIO()
            np.save(buf, value.detach().cpu().numpy(), allow_pickle=False)
            fields[f"{name}.npy"] = buf.getvalue()
        elif isinstance(value, np.ndarray):
            buf = io.BytesIO()
            np.save(buf, value, allow_pickle=False)
            fields[f"{name}.npy"] = buf.getvalue()
        else:
            plain[name] = value
    fields["json"] = json.dumps(plain).encode("utf-8")
    return fields


def sample_payload(sample: Dict[str, bytes], fields: Sequence[str], what: str,
                   error: Type[Exception] = ValueError) -> Tuple[str, str, dict]:
    """(key, field, meta) of one sample: the first of ``fields`` (file extensions) it holds and
    its parsed ``json`` field ({} without one). A sample without any of ``fields`` raises
    ``error`` naming the sample and the fields it has (the dataset counts it as unreadable).
    Plugins' SAMPLE_DECODERs start with this, ``what`` naming their payload in the message."""
    key = sample.get("__key__", "?")
    field = next((f for f in fields if f in sample), None)
    if field is None:
        raise error(f"sample {key} has no {what} field (one of {list(fields)}); "
                    f"fields: {sorted(k for k in sample if not k.startswith('__'))}")
    return key, field, (json.loads(sample["json"]) if "json" in sample else {})


def decode_tensor_sample(sample: Dict[str, bytes]) -> Dict[str, Any]:
    item: Dict[str, Any] = {}
    for ext, value in sample.items():
        if ext.endswith(".npy"):
            item[ext[: -len(".npy")]] = torch.from_numpy(np.load(io.BytesIO(value), allow_pickle=False))
    if "json" in sample:
        for k, v in json.loads(sample["json"]).items():
            item[k] = torch.tensor(v) if isinstance(v, (int, float, list)) else v
    if "input" not in item:
        raise ValueError(f"sample {sample.get('__key__')} has no 'input.npy' field")
    return item


@SAMPLE_DECODER.register(name="tensors")
def build_tensor_decoder(cfg, mode: str, meta: dict) -> Callable[[Dict[str, bytes]], dict]:
    """Samples written from any dataset's items (tools/make_shards.py --dataset): tensors are
    stored as they came out of the dataset (no transform is applied again)."""
    return decode_tensor_sample


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
    """Streams the samples of a shard index through ``decoder``; see the module docstring.

    ``train``: infinite, shards permuted per epoch and a shuffle buffer; otherwise one pass in
    index order. ``rank`` / ``world_size`` default to the process group's. Random access
    (``dataset[i]``) also works -- slowly, by scanning tar headers (used for one batch of
    codebook initialisation, or tools that index a dataset)."""

    def __init__(self, index: dict, decoder: Callable[[Dict[str, bytes]], Any], train: bool, seed: int = 0,
                 buffer_size: int = 1000, rank: Optional[int] = None, world_size: Optional[int] = None,
                 name: str = "shards") -> None:
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
        #: Return a bridle.data.build.BadItem naming an unreadable sample instead of None
        #: (set by the training loader; the collate counts both).
        self.name_bad_items = False

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def device_transform(self):
        """The decoder's batch transform on the device, if it has one (e.g. features computed on
        the device from the raw samples the decoder returns); see data.build.device_transform_of."""
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
        order = np.random.default_rng(_seed(self.seed, "shards", epoch)).permutation(n).tolist() if self.train \
            else list(range(n))
        k = max(1, math.ceil(num_slots / n))
        return [_Part(s, p, k, self.counts[s]) for s in order for p in range(k)]

    def _slot_parts(self, epoch: int, slot: int, num_slots: int) -> List[_Part]:
        return [u for i, u in enumerate(self._parts(epoch, num_slots)) if i % num_slots == slot]

    def _order(self, epoch: int, slot: int, n: int) -> List[int]:
        rng = np.random.default_rng(_seed(self.seed, "buffer", epoch, slot)) if self.train else None
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
                for j, sample in enumerate(wds.tariterators.group_by_keys(
                        ({"__url__": path, **s} for s in files))):
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
            logger.warning("%s: shard '%s' is unreadable after %d of its samples (%s: %s); %d samples skipped.",
                           self.name, path, got, type(exc).__name__, exc, missing)
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
            from .build import BadItem

            return BadItem(key, f"{key} ({type(exc).__name__}: {exc})")
        return None

    def _decode(self, key: str, raw: Optional[Dict[str, bytes]]) -> Optional[dict]:
        if raw is None:
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
        main = get_worker_info() is None
        gen = torch.random.default_generator
        saved = (random.getstate(), np.random.get_state(), gen.get_state()) if main else None
        random.seed(seed)
        np.random.seed(seed % (2**32))
        gen.manual_seed(seed)  # (torch.manual_seed would also queue a lazy CUDA seeding call per item)
        try:
            return self._decode(key, raw)
        finally:
            if saved is not None:
                random.setstate(saved[0])
                np.random.set_state(saved[1])
                gen.set_state(saved[2])

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
        item_seed = _seed(self.seed, "items", rank)
        batch_no, in_batch = b0 + wid, 0  # this rank's batch number of the next batch of this worker
        pos_in_epoch, empty = consumed, 0
        while True:
            got = 0
            for key, raw in self._epoch_stream(epoch, slot, num_slots, pos_in_epoch):
                got += 1
                pos = batch_no * self._batch_size + in_batch  # position in this rank's stream
                yield self._seeded_decode(key, raw, _seed(item_seed, pos))
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


def build_stream_loader(cfg, dataset: IterableDataset, consumed: int, batch_size: int,
                        loader_kwargs: dict, train: bool = True) -> DataLoader:
    """DataLoader of a streaming dataset: no sampler (the dataset orders, splits and resumes
    itself); ``consumed`` samples of this rank are skipped."""
    if train and hasattr(dataset, "set_start"):
        dataset.set_start(consumed, batch_size)
    if hasattr(dataset, "name_bad_items"):
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
    kw.setdefault("generator", torch.Generator().manual_seed(_seed(max(int(cfg.SEED), 0), "stream-loader",
                                                                   comm.get_rank(), consumed)))
    return DataLoader(dataset, batch_size=batch_size, drop_last=train, **kw)


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
        raise ConfigValueError(f"DATASET 'shards', split '{split}': DATASETS.SHARDS.{key} is empty; set it to the "
                               "index.json written by tools/make_shards.py.")
    index_file = os.path.join(path, INDEX_NAME) if os.path.isdir(path) else path
    if not os.path.isfile(index_file):
        raise missing_file(f"DATASETS.SHARDS.{key}", index_file, "(expected the index.json tools/make_shards.py writes)")
    index = read_index(path)
    name = str(cfg.DATASETS.SHARDS.DECODER) or index["decoder"]
    if not name:
        raise ValueError(f"Shard index '{index['path']}' names no decoder; set DATASETS.SHARDS.DECODER.")
    decoder = SAMPLE_DECODER.get(name)(cfg, mode, index["meta"])
    buffer = int(cfg.DATASETS.SHARDS.SHUFFLE_BUFFER)
    if buffer < 0:
        raise ValueError(f"DATASETS.SHARDS.SHUFFLE_BUFFER must be >= 0; got {buffer}.")
    train = split == "train" and mode != "eval"
    return ShardedDataset(index, decoder, train=train, seed=max(int(cfg.SEED), 0), buffer_size=buffer,
                          name=f"shards:{split}")
