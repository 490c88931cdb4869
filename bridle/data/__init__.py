from .build import build_batch_transforms, build_test_loader, build_train_loader, skip_none_collate
from .samplers import InferenceSampler, TrainingSampler

__all__ = [
    "InferenceSampler",
    "TrainingSampler",
    "build_batch_transforms",
    "build_test_loader",
    "build_train_loader",
    "skip_none_collate",
]
from . import weighted_sampler  # noqa: F401,E402  registers the "WeightedSampler" SAMPLER entry
