"""The demos' modality-free machinery: :mod:`bridle.demo.driver` (pretrain, evaluate, report)
and :mod:`bridle.demo.study` (one schedule variant scored on a selection split). A plugin builds
the data and a :class:`DemoSpec`; the thin tools/demo*.py scripts call the plugin."""

from .driver import (  # noqa: F401
    REPO,
    DemoSpec,
    DemoTask,
    base_parser,
    code_usage,
    demo_env,
    phase_quantizer,
    run_demo,
    say,
    schedule_checkpoints,
    selected,
    spec_configs,
    train_net,
)

__all__ = [
    "REPO",
    "DemoSpec",
    "DemoTask",
    "base_parser",
    "code_usage",
    "demo_env",
    "phase_quantizer",
    "run_demo",
    "say",
    "schedule_checkpoints",
    "selected",
    "spec_configs",
    "train_net",
]
