"""WebDataset tar shards: the core "shards" DATASET (a stream, resumable, split over ranks and
loader workers), the writer behind tools/make_shards.py and the SHARD_SOURCE entries it writes
from. The format, the read order and the command line are described in docs/data.md.

Modules: ``index`` (read an index, scan a tar), ``writer`` (ShardSink, tensor items, the
job driver), ``decode`` (sample helpers, the "tensors" decoder), ``dataset`` (ShardedDataset,
the "shards" DATASET), ``sources`` (SHARD_SOURCE, the command line as a function). Every name
is importable from ``bridle.data.shards`` as before the split."""

from ..build import build_stream_loader  # noqa: F401  (the streaming loader lives with the other loaders)
from .dataset import ShardedDataset, build_shards, shuffle_order
from .decode import build_tensor_decoder, decode_tensor_sample, sample_payload
from .index import INDEX_FORMAT, INDEX_NAME, INDEX_VERSION, SIDECAR_SUFFIX, read_index, scan_tar
from .sources import DatasetSource, ShardSource, build_parser, write_shards, write_shards_cli
from .writer import Job, ShardSink, encode_tensor_item, file_fields, write_jobs

__all__ = [
    "INDEX_FORMAT",
    "INDEX_NAME",
    "INDEX_VERSION",
    "SIDECAR_SUFFIX",
    "DatasetSource",
    "Job",
    "ShardSink",
    "ShardSource",
    "ShardedDataset",
    "build_parser",
    "build_shards",
    "build_stream_loader",
    "build_tensor_decoder",
    "decode_tensor_sample",
    "encode_tensor_item",
    "file_fields",
    "read_index",
    "sample_payload",
    "scan_tar",
    "shuffle_order",
    "write_jobs",
    "write_shards",
    "write_shards_cli",
]
