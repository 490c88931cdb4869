from .batch import BadItemAccounting, BatchPreparer, apply_device_transform, device_transform_of, prepare_batch
from .build import build_batch_transforms, build_test_loader, build_train_loader
from .items import BadItem, skip_none_collate
from .samplers import InferenceSampler, TrainingSampler

__all__ = [
    "BadItem",
    "BadItemAccounting",
    "BatchPreparer",
    "InferenceSampler",
    "TrainingSampler",
    "apply_device_transform",
    "build_batch_transforms",
    "build_test_loader",
    "build_train_loader",
    "device_transform_of",
    "prepare_batch",
    "skip_none_collate",
]
from . import weighted_sampler  # noqa: F401,E402  registers the "WeightedSampler" SAMPLER entry
