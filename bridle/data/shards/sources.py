"""What tools/make_shards.py writes shards from: the SHARD_SOURCE entries, each owning one
command-line flag, and :func:`write_shards_cli`, the whole command line as a library call.

The core registers the source "dataset" (``--dataset NAME``: the items of any registered
DATASET, as tensors, for the "tensors" decoder); each plugin registers the sources of its own
file formats next to its SAMPLE_DECODER."""

import argparse
import os
from typing import Callable, List, Optional, Sequence, Tuple

from bridle.registry import SHARD_SOURCE

from .writer import Fields, Job, ShardSink, encode_tensor_item, write_jobs

__all__ = ["ShardSource", "build_parser", "write_shards", "write_shards_cli"]

DESCRIPTION = 'Write WebDataset tar shards (+ ``index.json``) for the core "shards" dataset.'
EPILOG = """\
Sources (one per run; run once per split, into its own folder):

{sources}

Then: ``DATASETS.TRAIN shards DATASETS.SHARDS.TRAIN_INDEX <out>/index.json``.
A file that cannot be read is skipped and listed in ``<out>/skipped.txt`` (its index stays
unused, so the keys still name the source entries).
"""


class ShardSource:
    """Base class of a SHARD_SOURCE entry (the registry's contract, spelled out).

    ``flag`` is the source's option (one source per run: the flags are mutually exclusive and
    one is required), ``help`` its one-line help and ``doc`` its paragraph in ``--help``.
    :meth:`add_arguments` adds the source's own further options (``--root``, ``--out`` and the
    shard-size / worker options are common to every source). ``accepts_opts``: whether the
    trailing ``KEY VALUE`` config overrides apply to it.

    A file source returns its work from :meth:`jobs` and :meth:`encoder`: the common driver
    (:func:`bridle.data.shards.write_jobs`) encodes the jobs on a pool of processes, in order,
    and lists unreadable files in ``skipped.txt``. A source that writes its shards itself
    overrides :meth:`write`."""

    flag: str = ""
    help: str = ""
    metavar: Optional[str] = None
    doc: str = ""
    accepts_opts: bool = False

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add this source's own options (not its flag) to ``parser``."""

    def selected(self, args: argparse.Namespace) -> bool:
        return bool(getattr(args, self.dest, None))

    def jobs(self, args: argparse.Namespace) -> Tuple[List[Job], dict, str]:
        """(jobs, index meta, SAMPLE_DECODER name): one job ``(index, path, label dict)`` per file."""
        raise NotImplementedError(f"{type(self).__name__}: a SHARD_SOURCE defines jobs() + encoder(), or write().")

    def encoder(self, args: argparse.Namespace) -> Callable[[Job], Fields]:
        """A picklable ``fn(job) -> {ext: bytes}`` that raises when the file cannot be read."""
        raise NotImplementedError(f"{type(self).__name__}: a SHARD_SOURCE defines jobs() + encoder(), or write().")

    def write(self, args: argparse.Namespace) -> str:
        """Write the shards of ``args`` under ``args.out``; returns the path of ``index.json``."""
        jobs, meta, decoder = self.jobs(args)
        return write_jobs(
            jobs,
            self.encoder(args),
            args.out,
            decoder,
            meta,
            args.shard_size,
            args.max_shard_mb << 20,
            args.num_workers,
        )


def _identity(x):
    return x


@SHARD_SOURCE.register(name="dataset")
class DatasetSource(ShardSource):
    """The items of a registered DATASET exactly as it returns them in a mode (tensors as .npy,
    the rest as JSON), for the "tensors" decoder."""

    flag = "--dataset"
    help = "a registered DATASET entry (items as tensors)"
    doc = (
        "  --dataset NAME --config-file CFG [--split S] [--mode M] [KEY VALUE ...]   the items of any\n"
        "        registered DATASET (tensors as .npy, the rest as JSON) exactly as the dataset returns\n"
        '        them in mode M (default eval, so no random augmentation is frozen in); decoder "tensors"'
    )
    accepts_opts = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--config-file", default="", help="config of --dataset")
        parser.add_argument("--split", default="train", help="split of --dataset")
        parser.add_argument("--mode", default="eval", help="mode of --dataset (eval: no random augmentation)")

    def write(self, args: argparse.Namespace) -> str:
        import torch
        from torch.utils.data import DataLoader

        from bridle.config import load_config
        from bridle.data.build import build_dataset

        cfg = load_config(args.config_file, args.opts, freeze=False)
        ds = build_dataset(cfg, args.dataset, args.split, args.mode)
        loader = DataLoader(ds, batch_size=None, num_workers=args.num_workers, collate_fn=_identity)
        sink = ShardSink(
            args.out,
            decoder="tensors",
            max_count=args.shard_size,
            max_bytes=args.max_shard_mb << 20,
            meta={
                "num_classes": getattr(ds, "num_classes", None) or 0,
                "source": args.dataset,
                "split": args.split,
                "mode": args.mode,
            },
        )
        skipped = 0
        with torch.no_grad():
            for item in loader:
                if item is None:
                    skipped += 1
                    continue
                sink.write(encode_tensor_item(item))
        index = sink.close()
        print(
            f"make_shards: {sink.num_samples} items of '{args.dataset}' ({args.split}, {args.mode}) in "
            f"{len(sink.shards)} shards, {skipped} unreadable items skipped; index {index}",
            flush=True,
        )
        return index


def _sources() -> List[ShardSource]:
    from bridle.plugins import load_plugins

    load_plugins()  # plugins register the sources of their file formats
    return [cls() for _, cls in SHARD_SOURCE]


def build_parser(sources: Optional[Sequence[ShardSource]] = None) -> argparse.ArgumentParser:
    """The make_shards command line: one flag per registered source, their options, the
    common ones."""
    sources = _sources() if sources is None else list(sources)
    epilog = EPILOG.format(sources="\n".join(s.doc for s in sources if s.doc))
    p = argparse.ArgumentParser(
        prog="make_shards.py",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=epilog,
    )
    group = p.add_mutually_exclusive_group(required=True)
    for s in sources:
        group.add_argument(s.flag, metavar=s.metavar, help=s.help)
    p.add_argument("--out", required=True, help="output folder (shards + index.json)")
    p.add_argument("--root", default="", help="folder the relative paths of a source list are resolved against")
    for s in sources:
        s.add_arguments(p)
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard")
    p.add_argument("--max-shard-mb", type=int, default=1024, help="MiB per shard at most")
    p.add_argument("--num-workers", type=int, default=min(8, os.cpu_count() or 1), help="reading processes")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides (sources that take a config)")
    return p


def write_shards(args: argparse.Namespace, sources: Optional[Sequence[ShardSource]] = None) -> str:
    """Write the shards the parsed command line ``args`` asks for; returns the index path."""
    sources = _sources() if sources is None else list(sources)
    source = next(s for s in sources if s.selected(args))
    return source.write(args)


def write_shards_cli(argv: Optional[Sequence[str]] = None) -> str:
    """tools/make_shards.py as a function: parse ``argv`` (``sys.argv[1:]`` when None), write the
    shards, return the path of ``index.json``."""
    sources = _sources()
    p = build_parser(sources)
    args = p.parse_args(argv)
    if args.shard_size <= 0 or args.max_shard_mb <= 0:
        p.error("--shard-size and --max-shard-mb must be > 0")
    source = next((s for s in sources if s.selected(args)), None)
    if source is None:
        p.error(f"the source option needs a value (one of {', '.join(s.flag for s in sources)})")
    if args.opts and not source.accepts_opts:
        takers = " / ".join(s.flag for s in sources if s.accepts_opts)
        p.error(f"KEY VALUE overrides {args.opts} only apply to {takers}")
    return write_shards(args, sources)
