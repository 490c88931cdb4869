"""The benchmark driver: the component registry, timing, the table and the command line.

A component is a function ``fn(args) -> list[dict]`` registered in :data:`BENCHMARK` with
:func:`component`; every returned row is one measurement. ``add_args(parser)`` (given to
:func:`component`) adds the component's own options. The modality-free components live in
:mod:`bridle.benchmark.steps` and :mod:`bridle.benchmark.loader`; a plugin adds its own in a
``benchmarks`` submodule (``<plugin>/benchmarks.py``), imported by :func:`load_components`.
Benchmarks time things; tests never assert wall-clock.
"""

import argparse
import importlib
import importlib.util
import json
import os
import platform
import resource
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import torch

from bridle.registry import Registry

Row = Dict[str, object]

# The repository this package is installed from (editable): relative config paths of the
# components (``--config-file configs/...``) are read from it.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BENCHMARK = Registry(
    "BENCHMARK",
    "fn(args: argparse.Namespace) -> list of row dicts (one measurement each), with an .add_args "
    "attribute (None or fn(parser) adding the component's options); tools/benchmark.py --component "
    "NAME. Plugins register theirs in a 'benchmarks' submodule.",
    core_modules=("bridle.benchmark.steps", "bridle.benchmark.loader"),
)


def component(name: str, add_args: Optional[Callable[[argparse.ArgumentParser], None]] = None):
    """Register ``fn(args) -> rows`` as the benchmark of ``name`` (``add_args`` adds options)."""

    def deco(fn):
        fn.add_args = add_args
        BENCHMARK.register(fn, name=name)
        return fn

    return deco


def load_components() -> Dict[str, Callable]:
    """Every registered component: the core's and those of each loaded plugin's ``benchmarks``
    submodule (imported here, so training runs never import benchmark code)."""
    from bridle.plugins import load_plugins

    for name, module in sorted(load_plugins().items()):
        if not hasattr(module, "__path__"):  # a plain module has no submodules
            continue
        sub = f"{module.__name__}.benchmarks"
        if importlib.util.find_spec(sub) is not None:
            importlib.import_module(sub)
    return dict(BENCHMARK)


# ----------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: The clock of time_fn: wall time, or this process's CPU time (``--clock process``: on a CPU
#: shared with other jobs, a single-threaded run's CPU time does not count time spent waiting).
CLOCK: Callable[[], float] = time.perf_counter


def clock() -> float:
    """The current reading of :data:`CLOCK` (set by :func:`main`'s ``--clock``)."""
    return CLOCK()


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children (the C++
    compiler runs of inductor with ``TORCHINDUCTOR_COMPILE_THREADS=1``): compile cost on a
    shared machine, where wall time mostly measures the other jobs."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def time_fn(fn: Callable[[], object], device: torch.device, iters: int, warmup: int) -> float:
    """Median seconds per call of ``fn`` over ``iters`` timed calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        start = CLOCK()
        fn()
        sync(device)
        times.append(CLOCK() - start)
    times.sort()
    return times[len(times) // 2]


# ----------------------------------------------------------------------------- report
def environment(args: argparse.Namespace) -> Dict[str, object]:
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": args.device,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "clock": getattr(args, "clock", "wall"),
    }
    if args.device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    return env


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def format_table(rows: List[Row]) -> str:
    if not rows:
        return "(no rows)"
    cols = list(rows[0].keys())
    for r in rows[1:]:
        cols += [c for c in r if c not in cols]
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    for row in cells:
        out.append("  ".join(v.rjust(w) if _is_number(v) else v.ljust(w) for v, w in zip(row, widths)))
    return "\n".join(out)


# ----------------------------------------------------------------------------- command line
def build_parser(description: str = "", defaults: Optional[Mapping[str, object]] = None) -> argparse.ArgumentParser:
    """The options of every registered component (plugins loaded first); ``defaults`` overrides
    option defaults by destination name (e.g. ``config_file``)."""
    components = load_components()
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--component", action="append", choices=sorted(components), help="repeatable")
    parser.add_argument("--list", action="store_true", help="list the components and exit")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    parser.add_argument("--json", default="", help="also write the rows and the environment here")
    parser.add_argument(
        "--clock",
        choices=["wall", "process"],
        default="wall",
        help="wall time (default) or this process's CPU time (CPU runs on a shared machine)",
    )
    for fn in components.values():  # registration order: the core's groups first
        if getattr(fn, "add_args", None) is not None:
            fn.add_args(parser)
    if defaults:
        parser.set_defaults(**dict(defaults))
    return parser


def run_components(names: Sequence[str], args: argparse.Namespace) -> List[Row]:
    rows: List[Row] = []
    for name in names:
        rows += BENCHMARK.get(name)(args)
    return rows


def main(
    argv: Optional[Sequence[str]] = None, description: str = "", defaults: Optional[Mapping[str, object]] = None
) -> List[Row]:
    """Parse ``argv``, run the ``--component``s, print the environment and the table, write
    ``--json``; returns the rows."""
    parser = build_parser(description, defaults)
    args = parser.parse_args(argv)
    if args.list:
        for name, fn in sorted(load_components().items()):
            print(f"{name:<20} {(fn.__doc__ or '').strip().splitlines()[0]}")
        return []
    if not args.component:
        parser.error(f"--component is required (one of {', '.join(BENCHMARK.names())})")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.process_time if args.clock == "process" else time.perf_counter
    rows = run_components(args.component, args)
    env = environment(args)
    print(" ".join(f"{k}={v}" for k, v in env.items()))
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "rows": rows}, f, indent=1)
        print(f"wrote {args.json}")
    return rows
