"""Micro-benchmarks of Bridle components (tools/benchmark.py, benchmarks/gpu_check.py).

:mod:`bridle.benchmark.core` holds the component registry :data:`BENCHMARK`, the timing and the
command line; :mod:`bridle.benchmark.steps` and :mod:`bridle.benchmark.loader` the
modality-free components. A plugin adds components (and "loader" pipelines) in its
``benchmarks`` submodule, imported by :func:`load_components`.
"""

from .core import (  # noqa: F401
    BENCHMARK,
    REPO,
    Row,
    build_parser,
    component,
    environment,
    format_table,
    load_components,
    main,
    run_components,
    sync,
    time_fn,
)
from .loader import LOADER_PIPELINE, LoaderCase  # noqa: F401, I001
from .steps import RepeatLoader, synthetic_input, time_training_step  # noqa: F401  (registers first: --help order)

__all__ = [
    "BENCHMARK",
    "LOADER_PIPELINE",
    "LoaderCase",
    "REPO",
    "RepeatLoader",
    "Row",
    "build_parser",
    "component",
    "environment",
    "format_table",
    "load_components",
    "main",
    "run_components",
    "sync",
    "synthetic_input",
    "time_fn",
    "time_training_step",
]
