"""Registered classification evaluators: "accuracy", "map", "auc".

Each keeps the logits and labels it is given, gathers them from every rank at ``evaluate()``
and scores the whole split at once. Logits become probabilities with the activation matching
the head's loss (softmax for MODEL.HEAD.LOSS "ce", sigmoid for "bce"), computed in float64.

Multi-view evaluation: when batches carry ``"view_group"`` (long [B], the id of the original
sample each view was cut from, unique across the split), the probabilities of all views of a
sample are averaged before scoring, so a sample counts once whatever its number of views.

All metrics are fractions in [0, 1] (``top1`` 0.93 means 93 % accuracy).
"""

import logging
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from bridle.registry import EVALUATOR
from bridle.utils import comm

from .evaluator import DatasetEvaluator
from .metrics import aggregate_views, average_precision, mean_roc_auc, topk_accuracy

logger = logging.getLogger(__name__)

_ACTIVATIONS = ("softmax", "sigmoid")


class ClassificationEvaluator(DatasetEvaluator):
    """Collects logits, labels and optional view groups; subclasses implement :meth:`score`."""

    name = "classification"

    def __init__(self, cfg=None, activation: Optional[str] = None) -> None:
        if activation is None:
            loss = str(cfg.MODEL.HEAD.LOSS).lower() if cfg is not None else "ce"
            activation = "sigmoid" if loss == "bce" else "softmax"
        if activation not in _ACTIVATIONS:
            raise ValueError(f"Evaluator '{self.name}': activation must be one of {_ACTIVATIONS}; got '{activation}'.")
        self.activation = activation
        self.reset()

    def reset(self) -> None:
        self._scores: List[torch.Tensor] = []
        self._labels: List[torch.Tensor] = []
        self._groups: List[torch.Tensor] = []

    def process(self, outputs: torch.Tensor, batch: dict) -> None:
        if "label" not in batch:
            raise KeyError(
                f"Evaluator '{self.name}' needs batch['label'], but the evaluation dataset returns "
                "items without 'label' (DATASETS.TEST / DATASETS.VAL must be labelled)."
            )
        if outputs.dim() != 2:
            raise ValueError(f"Evaluator '{self.name}' expects logits [B, C]; got {list(outputs.shape)}.")
        labels = batch["label"]
        if labels.shape[0] != outputs.shape[0]:
            raise ValueError(f"Evaluator '{self.name}': {outputs.shape[0]} predictions but {labels.shape[0]} labels.")
        has_group = "view_group" in batch
        if self._scores and has_group != bool(self._groups):
            raise ValueError("Some evaluation batches carry 'view_group' and others do not.")
        self._scores.append(outputs.detach().float().cpu())
        self._labels.append(labels.detach().cpu())
        if has_group:
            self._groups.append(batch["view_group"].detach().view(-1).long().cpu())

    def _gather(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Every rank's predictions -> (probabilities [G, C] float64, labels [G] or [G, C]),
        with views averaged per group."""
        local = (
            torch.cat(self._scores) if self._scores else None,
            torch.cat(self._labels) if self._labels else None,
            torch.cat(self._groups) if self._groups else None,
        )
        parts = [p for p in comm.all_gather_object(local) if p[0] is not None]
        if not parts:
            raise RuntimeError(f"Evaluator '{self.name}': no predictions were processed (empty evaluation split?).")
        scores = torch.cat([p[0] for p in parts]).double()
        labels = torch.cat([p[1] for p in parts])
        grouped = [p[2] is not None for p in parts]
        if any(grouped) and not all(grouped):
            raise ValueError("'view_group' is present on some ranks only.")
        groups = torch.cat([p[2] for p in parts]) if all(grouped) else None
        probs = torch.softmax(scores, dim=1) if self.activation == "softmax" else torch.sigmoid(scores)
        return aggregate_views(probs, labels, groups)

    def evaluate(self) -> Dict[str, float]:
        probs, labels = self._gather()
        return self.score(probs, labels)

    def score(self, probs: torch.Tensor, labels: torch.Tensor) -> Dict[str, float]:
        raise NotImplementedError


def multi_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """long [N] class ids -> {0, 1} [N, C]; float [N, C] (multi-hot / soft) -> label > 0.5."""
    if labels.dim() == 1:
        if labels.numel() and int(labels.max()) >= num_classes:
            raise ValueError(
                f"Label {int(labels.max())} out of range for {num_classes} classes (MODEL.HEAD.NUM_CLASSES)."
            )
        return F.one_hot(labels.long(), num_classes).double()
    if labels.shape[1] != num_classes:
        raise ValueError(f"Labels have {labels.shape[1]} classes but the model predicts {num_classes}.")
    return (labels > 0.5).double()


class AccuracyEvaluator(ClassificationEvaluator):
    """Top-1 and top-5 accuracy (top-k only when there are at least k classes)."""

    name = "accuracy"
    primary_metric = "top1"

    def score(self, probs, labels):
        if labels.dim() == 1 and labels.numel() and int(labels.max()) >= probs.shape[1]:
            raise ValueError(
                f"Label {int(labels.max())} out of range for {probs.shape[1]} classes (MODEL.HEAD.NUM_CLASSES)."
            )
        return topk_accuracy(probs, labels, ks=(1, 5))


class MAPEvaluator(ClassificationEvaluator):
    """Mean over classes of the average precision, exactly sklearn's
    ``average_precision_score(y, s, average="macro")``: a class without positives counts as 0."""

    name = "map"
    primary_metric = "mAP"

    def score(self, probs, labels):
        y = multi_hot(labels, probs.shape[1])
        empty = int((y.sum(0) == 0).sum())
        if empty:
            logger.warning(
                f"mAP: {empty} of {y.shape[1]} classes have no positive sample in the evaluation split; "
                "they count as AP 0 (as sklearn's average_precision_score)."
            )
        return {"mAP": float(average_precision(probs, y).mean())}


class AUCEvaluator(ClassificationEvaluator):
    """Macro ROC AUC over the classes where it is defined (both labels present)."""

    name = "auc"
    primary_metric = "auc"

    def score(self, probs, labels):
        y = multi_hot(labels, probs.shape[1])
        auc, left_out = mean_roc_auc(probs, y)
        if left_out:
            logger.warning(
                f"AUC: {left_out} of {y.shape[1]} classes have only one label value in the evaluation "
                "split; AUC is undefined for them and they are left out of the mean."
            )
        return {"auc": auc}


@EVALUATOR.register(name="accuracy")
def build_accuracy_evaluator(cfg) -> AccuracyEvaluator:
    return AccuracyEvaluator(cfg)


@EVALUATOR.register(name="map")
def build_map_evaluator(cfg) -> MAPEvaluator:
    return MAPEvaluator(cfg)


@EVALUATOR.register(name="auc")
def build_auc_evaluator(cfg) -> AUCEvaluator:
    return AUCEvaluator(cfg)
