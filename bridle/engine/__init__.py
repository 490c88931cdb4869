from .defaults import DefaultTrainer, default_argument_parser, default_setup, resolve_device
from .hooks import EvalHook, IterationTimer, LRScheduler, PeriodicCheckpointer, PeriodicWriter, ProgressBar
from .launch import launch
from .train_loop import HookBase, SimpleTrainer, TrainerBase

__all__ = [
    "DefaultTrainer",
    "EvalHook",
    "HookBase",
    "IterationTimer",
    "LRScheduler",
    "PeriodicCheckpointer",
    "PeriodicWriter",
    "ProgressBar",
    "SimpleTrainer",
    "TrainerBase",
    "default_argument_parser",
    "default_setup",
    "launch",
    "resolve_device",
]
