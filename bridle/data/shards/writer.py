"""Writing shards: :class:`ShardSink` (tar shards + sidecars + ``index.json``), the tensor
encoding of any dataset item, and :func:`write_jobs`, the driver that encodes a list of jobs
on a pool of processes and lists what could not be read in ``skipped.txt``."""

import io
import json
import os
from multiprocessing import Pool
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .index import INDEX_FORMAT, INDEX_NAME, INDEX_VERSION, SIDECAR_SUFFIX, scan_tar

__all__ = ["Job", "ShardSink", "encode_tensor_item", "file_fields", "write_jobs"]

#: A job of a file source: (index in the source list, path of the file, JSON-able label dict).
Job = Tuple[int, str, dict]
#: What a source's encode function returns for one job: sample fields ``{ext: bytes}``.
Fields = Dict[str, bytes]


class ShardSink:
    """Writes samples (dicts of bytes) into ``out_dir/<prefix>-%06d.tar`` with WebDataset's
    TarWriter, a new shard every ``max_count`` samples or ``max_bytes`` bytes, then the index.

    Sample keys are the running sample number (``%09d``), so a sample's key is its position in
    the dataset; fields are ``{ext: bytes}`` (``json`` for labels/metadata)."""

    def __init__(
        self,
        out_dir: str,
        decoder: str,
        meta: Optional[dict] = None,
        prefix: str = "shard",
        max_count: int = 1000,
        max_bytes: int = 1 << 30,
    ) -> None:
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

    def write(self, fields: Fields) -> str:
        """Append one sample; returns its key."""
        size = sum(len(v) for v in fields.values())
        full = self._count >= self.max_count or (self._count and self._bytes + size > self.max_bytes)
        if self._writer is None or full:
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
        index = {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "decoder": self.decoder,
            "meta": self.meta,
            "num_samples": self.num_samples,
            "shards": self.shards,
        }
        path = os.path.join(self.out_dir, INDEX_NAME)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(index, f, indent=1)
        os.replace(tmp, path)
        return path


def encode_tensor_item(item: Dict[str, Any]) -> Fields:
    """A dataset item (dict of tensors / numbers) as sample fields: each tensor as
    ``<name>.npy``, everything else in ``json``. Read back by the "tensors" decoder."""
    fields: Fields = {}
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


def file_fields(index: int, ext: str, data: bytes, labels: dict) -> Fields:
    """The fields of a sample made from one file: its bytes under its extension and
    ``json`` = ``{"index": index, **labels}`` (what the plugins' file decoders read)."""
    return {ext: data, "json": json.dumps({"index": index, **labels}).encode("utf-8")}


class _Guarded:
    """Picklable job runner for the worker pool: job -> (index, fields or None, error). Any
    error of ``encode`` marks the job's file unreadable (listed in skipped.txt, not written)."""

    def __init__(self, encode: Callable[[Job], Fields]) -> None:
        self.encode = encode

    def __call__(self, job: Job):
        try:
            return job[0], self.encode(job), None
        except Exception as e:  # noqa: BLE001  (any unreadable file is skipped and reported)
            return job[0], None, f"{type(e).__name__}: {e}"


def write_jobs(
    jobs: Sequence[Job],
    encode: Callable[[Job], Fields],
    out: str,
    decoder: str,
    meta: dict,
    shard_size: int,
    max_bytes: int,
    workers: int,
) -> str:
    """Encode ``jobs`` (on ``workers`` processes when > 1, in order) into shards under ``out``
    for the SAMPLE_DECODER ``decoder``; ``encode(job) -> fields`` must be picklable. A job whose
    encoding raises is skipped and listed in ``out/skipped.txt`` (path, error). Returns the
    path of ``index.json``."""
    sink = ShardSink(out, decoder=decoder, meta=meta, max_count=shard_size, max_bytes=max_bytes)
    run = _Guarded(encode)
    skipped: List[Tuple[str, str]] = []
    results: Iterable = map(run, jobs) if workers <= 1 else None
    pool = None
    if results is None:
        pool = Pool(workers)
        results = pool.imap(run, jobs, chunksize=8)
    try:
        for n, (_, fields, err) in enumerate(results):
            if fields is None:
                skipped.append((jobs[n][1], err))
            else:
                sink.write(fields)
            if (n + 1) % 10000 == 0:
                print(f"make_shards: {n + 1}/{len(jobs)} samples", flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    with open(os.path.join(out, "skipped.txt"), "w", encoding="utf-8") as f:
        for path, err in skipped:
            f.write(f"{path}\t{err}\n")
    index = sink.close()
    print(
        f"make_shards: {sink.num_samples} samples in {len(sink.shards)} shards, {len(skipped)} unreadable "
        f"files skipped (listed in {os.path.join(out, 'skipped.txt')}); index {index}",
        flush=True,
    )
    return index
