"""Classification metrics in torch (float64, vectorised over classes).

``average_precision`` reproduces ``sklearn.metrics.average_precision_score(y, s, average=None)``
(the non-interpolated step integral over distinct score thresholds, ties grouped), including its
convention for a class without any positive sample: sklearn (>= 1.3) sets recall to 1 at every
threshold, which makes that class's AP exactly 0, and the macro average *includes* it. We do the
same, so ``mean_average_precision`` equals ``average_precision_score(y, s, average="macro")``.

``roc_auc`` is the trapezoidal area under the ROC curve per class (what
``sklearn.metrics.roc_auc_score`` computes). AUC is undefined for a class whose column holds a
single label value; sklearn returns nan for it (older versions raise) and its macro average
becomes nan. ``mean_roc_auc`` instead averages over the classes where AUC is defined and
reports how many were left out.
"""

from typing import Optional, Tuple

import torch


def _ranked(
    scores: torch.Tensor, targets: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per column, in descending score order: cumulative true/false positives and a mask of
    the last position of every group of tied scores (the only points of the curves)."""
    if scores.shape != targets.shape or scores.dim() != 2:
        raise ValueError(f"scores and targets must both be [N, C]; got {list(scores.shape)} and {list(targets.shape)}.")
    s = scores.double()
    y = (targets > 0.5).double()
    s_sorted, order = torch.sort(s, dim=0, descending=True, stable=True)
    y_sorted = torch.gather(y, 0, order)
    tps = torch.cumsum(y_sorted, dim=0)
    fps = torch.cumsum(1.0 - y_sorted, dim=0)
    group_end = torch.ones_like(s_sorted, dtype=torch.bool)
    if s_sorted.shape[0] > 1:
        group_end[:-1] = s_sorted[:-1] != s_sorted[1:]
    return tps, fps, group_end, y


def _previous_group_value(values: torch.Tensor, group_end: torch.Tensor) -> torch.Tensor:
    """For a non-decreasing column ``values``: at each row, the value at the end of the previous
    tie group (0 before the first group)."""
    at_ends = torch.where(group_end, values, torch.zeros_like(values))
    running = torch.cummax(at_ends, dim=0).values
    return torch.cat([torch.zeros_like(running[:1]), running[:-1]], dim=0)


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """AP per class, float64 [C]. ``targets`` is {0, 1} (multi-hot); ``scores`` any real
    scores where higher means more likely. A class with no positive gets AP 0 (as sklearn)."""
    if scores.shape[0] == 0:
        raise ValueError("average_precision: no samples to score.")
    tps, fps, group_end, y = _ranked(scores, targets)
    num_pos = y.sum(dim=0)
    gain = torch.where(group_end, tps - _previous_group_value(tps, group_end), torch.zeros_like(tps))
    precision = tps / (tps + fps)
    ap = (gain * precision).sum(dim=0) / num_pos.clamp_min(1.0)
    return torch.where(num_pos > 0, ap, torch.zeros_like(ap))


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """``sklearn.metrics.average_precision_score(targets, scores, average="macro")``."""
    return float(average_precision(scores, targets).mean())


def roc_auc(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """ROC AUC per class, float64 [C]; nan where a class has no positive or no negative."""
    if scores.shape[0] == 0:
        raise ValueError("roc_auc: no samples to score.")
    tps, fps, group_end, y = _ranked(scores, targets)
    num_pos = y.sum(dim=0)
    num_neg = y.shape[0] - num_pos
    prev_tp = _previous_group_value(tps, group_end)
    prev_fp = _previous_group_value(fps, group_end)
    # Trapezoid between consecutive curve points (one point per tie group).
    area = torch.where(group_end, (fps - prev_fp) * (tps + prev_tp) * 0.5, torch.zeros_like(tps)).sum(dim=0)
    auc = area / (num_pos * num_neg).clamp_min(1.0)
    defined = (num_pos > 0) & (num_neg > 0)
    return torch.where(defined, auc, torch.full_like(auc, float("nan")))


def mean_roc_auc(scores: torch.Tensor, targets: torch.Tensor) -> Tuple[float, int]:
    """(macro AUC over the classes where it is defined, number of classes left out)."""
    per_class = roc_auc(scores, targets)
    ok = ~torch.isnan(per_class)
    if not bool(ok.any()):
        return float("nan"), int(per_class.numel())
    return float(per_class[ok].mean()), int((~ok).sum())


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict:
    """Fraction of samples whose label is among the top-k scores, for each k <= C.
    ``labels``: long [N] class ids, or float [N, C] (one-hot / soft: the argmax is the label)."""
    if labels.dim() == 2:
        labels = labels.argmax(dim=1)
    labels = labels.long().view(-1)
    n, c = scores.shape
    if labels.shape[0] != n:
        raise ValueError(f"topk_accuracy: {n} score rows but {labels.shape[0]} labels.")
    out = {}
    valid = [k for k in ks if k <= c]
    if not valid or n == 0:
        return out
    top = scores.topk(max(valid), dim=1).indices
    hit = top == labels[:, None]
    for k in valid:
        out[f"top{k}"] = float(hit[:, :k].any(dim=1).double().mean())
    return out


def aggregate_views(
    scores: torch.Tensor, labels: torch.Tensor, groups: Optional[torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Average ``scores`` over the rows that share a group id (views of one sample); the
    label of a group is that of its views, which must agree. Without groups: unchanged."""
    if groups is None:
        return scores, labels
    groups = groups.view(-1).long()
    if groups.shape[0] != scores.shape[0]:
        raise ValueError(f"view_group has {groups.shape[0]} entries for {scores.shape[0]} predictions.")
    uniq, inv = torch.unique(groups, return_inverse=True)
    g = uniq.shape[0]
    sums = torch.zeros(g, scores.shape[1], dtype=scores.dtype).index_add_(0, inv, scores)
    counts = torch.bincount(inv, minlength=g).to(scores.dtype)
    mean = sums / counts[:, None]
    first = torch.full((g,), scores.shape[0], dtype=torch.long)
    first = first.scatter_reduce(0, inv, torch.arange(scores.shape[0]), reduce="amin")
    group_labels = labels[first]
    mismatch = (group_labels[inv] != labels).reshape(labels.shape[0], -1).any(dim=1)
    if bool(mismatch.any()):
        bad = int(groups[mismatch][0])
        raise ValueError(f"Views of sample group {bad} (batch key 'view_group') carry different labels.")
    return mean, group_labels
