"""The "loader" component: samples/s of ONE loader worker for a one-file-per-sample dataset vs
the core "shards" dataset on the same data. Each plugin registers its pipeline (how to write
test data in both layouts and which dataset reads the files) in :data:`LOADER_PIPELINE`."""

import argparse
import os
import tempfile
from dataclasses import dataclass, field
from typing import List, Tuple

import torch

from bridle.registry import Registry

from . import core
from .core import REPO, Row, component


@dataclass
class LoaderCase:
    """What a pipeline wrote under its root, for the loader component to read back."""

    recipe: str  # pretraining config, relative to the repository (its transforms are timed)
    index: str  # index.json of the first shards layout
    files_dataset: str  # DATASET that reads the one-file-per-sample layout
    opts: List[str] = field(default_factory=list)  # KEY VALUE: points files_dataset at the files
    layouts: List[Tuple[str, str]] = field(default_factory=list)  # (row name, shards sub-folder of root)
    file_exts: Tuple[str, ...] = ()  # the sample files' extensions (their bytes on disk are reported)


LOADER_PIPELINE = Registry(
    "BENCHMARK_LOADER",
    "fn(root, n) -> bridle.benchmark.loader.LoaderCase: writes n samples under root one file per "
    "sample and as shards (tools/benchmark.py --component loader --loader-pipelines NAME).",
)


def _loader_args(parser: argparse.ArgumentParser) -> None:
    names = LOADER_PIPELINE.names()
    g = parser.add_argument_group("loader")
    g.add_argument("--loader-samples", type=int, default=64, help="samples written and read per pipeline (default 64)")
    g.add_argument("--loader-pipelines", nargs="+", default=names, choices=names)
    g.add_argument("--loader-dir", default="", help="where the test data is written (default: a temp dir)")


@component("loader", add_args=_loader_args)
def bench_loader(args: argparse.Namespace) -> List[Row]:
    """Samples/s of ONE loader worker (this process, pretraining mode: decode + features +
    transform) for each plugin's one-file-per-sample dataset vs the
    "shards" dataset on the same data (WebDataset tars). Files are on the local disk and in the
    page cache after writing, so this measures decode/transform cost, not the metadata cost of a
    cluster file system (where shards win)."""
    from bridle.config import load_config
    from bridle.data.build import build_dataset

    n = int(args.loader_samples)
    rows: List[Row] = []
    with tempfile.TemporaryDirectory(dir=args.loader_dir or None) as tmp:
        for kind in args.loader_pipelines:
            root = os.path.join(tmp, kind)
            case = LOADER_PIPELINE.get(kind)(root, n)

            def tar_bytes(sub):
                return sum(
                    os.path.getsize(os.path.join(root, sub, f))
                    for f in os.listdir(os.path.join(root, sub))
                    if f.endswith(".tar")
                )

            cfg = load_config(
                os.path.join(REPO, case.recipe),
                ["DATASETS.SHARDS.TRAIN_INDEX", case.index, "DATASETS.SHARDS.SHUFFLE_BUFFER", "16"] + list(case.opts),
                freeze=False,
            )
            files = build_dataset(cfg, case.files_dataset, "train", "pretrain")

            def read_files():
                for i in range(n):
                    files[i]

            def reader(sub):
                c = cfg.clone()
                c.merge_from_list(["DATASETS.SHARDS.TRAIN_INDEX", os.path.join(root, sub, "index.json")])
                shards = build_dataset(c, "shards", "train", "pretrain")
                shards.set_start(0, 1)

                def read_shards():
                    it = iter(shards)
                    for _ in range(n):
                        next(it)

                return read_shards

            file_bytes = sum(
                os.path.getsize(os.path.join(d, f))
                for d, _, fs in os.walk(root)
                for f in fs
                if f.endswith(tuple(case.file_exts)) and "shards" not in d
            )
            runs = [("one file per sample", read_files, file_bytes)]
            runs += [(name, reader(sub), tar_bytes(sub)) for name, sub in case.layouts]
            # interleaved (files, shards, files, ...) so that load drifts on a shared machine hit
            # every layout alike; median of --iters passes each
            for _, fn, _ in runs:
                for _ in range(args.warmup):
                    fn()
            times = {layout: [] for layout, _, _ in runs}
            for _ in range(args.iters):
                for layout, fn, _ in runs:
                    start = core.clock()
                    fn()
                    times[layout].append(core.clock() - start)
            for layout, fn, size in runs:
                sec = sorted(times[layout])[len(times[layout]) // 2]
                rows.append(
                    {
                        "component": "loader",
                        "name": f"{kind}: {layout}",
                        "samples": n,
                        "samples_per_s": round(n / sec, 1),
                        "ms_per_sample": round(sec * 1e3 / n, 2),
                        "MB_on_disk": round(size / 2**20, 1),
                        "threads": torch.get_num_threads(),
                    }
                )
    return rows
