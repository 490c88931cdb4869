"""Evaluation: ``inference_on_dataset`` and the registered EVALUATOR entries
("accuracy", "map", "auc"); see bridle.registry.EVALUATOR for the contract."""

from .classification import (
    AccuracyEvaluator,
    AUCEvaluator,
    ClassificationEvaluator,
    MAPEvaluator,
    multi_hot,
)
from .evaluator import DatasetEvaluator, DatasetEvaluators, build_evaluators, inference_on_dataset
from .metrics import (
    aggregate_views,
    average_precision,
    mean_average_precision,
    mean_roc_auc,
    roc_auc,
    topk_accuracy,
)

__all__ = [
    "AUCEvaluator",
    "AccuracyEvaluator",
    "ClassificationEvaluator",
    "DatasetEvaluator",
    "DatasetEvaluators",
    "MAPEvaluator",
    "aggregate_views",
    "average_precision",
    "build_evaluators",
    "inference_on_dataset",
    "mean_average_precision",
    "mean_roc_auc",
    "multi_hot",
    "roc_auc",
    "topk_accuracy",
]
