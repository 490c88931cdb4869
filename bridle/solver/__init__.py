from .build import build_optimizer, param_groups
from .lr_schedule import WarmupCosineSchedule

__all__ = ["WarmupCosineSchedule", "build_optimizer", "param_groups"]
