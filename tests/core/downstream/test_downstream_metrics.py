"""Evaluation metrics and evaluators against sklearn; multi-view averaging; inference loop."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn.metrics import average_precision_score, roc_auc_score

from bridle.evaluation import (
    AccuracyEvaluator,
    AUCEvaluator,
    MAPEvaluator,
    average_precision,
    build_evaluators,
    inference_on_dataset,
    mean_average_precision,
    roc_auc,
)
from bridle.registry import EVALUATOR


def _sk_map(y, s):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return average_precision_score(y, s, average="macro")


@pytest.mark.parametrize("seed", range(6))
def test_map_equals_sklearn_macro_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(5, 80)), int(rng.integers(2, 15))
    y = (rng.random((n, c)) < 0.3).astype(np.int64)
    y[:, 0] = 0  # a class without positives: sklearn gives it AP 0 and keeps it in the mean
    scores = rng.standard_normal((n, c))
    if seed % 2:
        scores = np.round(scores, 1)  # many ties
    ours = mean_average_precision(torch.from_numpy(scores), torch.from_numpy(y))
    assert ours == pytest.approx(_sk_map(y, scores), abs=1e-12)
    per_class = average_precision(torch.from_numpy(scores), torch.from_numpy(y))
    assert float(per_class[0]) == 0.0


def test_map_evaluator_equals_sklearn_on_probabilities():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 7, generator=g)
    labels = (torch.rand(50, 7, generator=g) < 0.3).float()
    ev = MAPEvaluator(activation="sigmoid")
    for i in range(0, 50, 16):  # several batches
        ev.process(logits[i : i + 16], {"label": labels[i : i + 16]})
    got = ev.evaluate()["mAP"]
    ref = _sk_map(labels.numpy(), torch.sigmoid(logits.double()).numpy())
    assert got == pytest.approx(ref, abs=1e-12)


def test_map_single_label_uses_one_hot_targets():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(40, 5, generator=g)
    labels = torch.arange(40) % 5
    ev = MAPEvaluator(activation="softmax")
    ev.process(logits, {"label": labels})
    probs = torch.softmax(logits.double(), 1).numpy()
    ref = _sk_map(np.eye(5)[labels.numpy()], probs)
    assert ev.evaluate()["mAP"] == pytest.approx(ref, abs=1e-12)


def test_auc_matches_sklearn_per_class_and_skips_undefined():
    rng = np.random.default_rng(3)
    y = (rng.random((60, 6)) < 0.4).astype(np.int64)
    y[:, 2] = 1  # no negative: AUC undefined
    s = np.round(rng.standard_normal((60, 6)), 1)
    per = roc_auc(torch.from_numpy(s), torch.from_numpy(y)).numpy()
    for k in range(6):
        if k == 2:
            assert np.isnan(per[k])
        else:
            assert per[k] == pytest.approx(roc_auc_score(y[:, k], s[:, k]), abs=1e-12)
    ev = AUCEvaluator(activation="sigmoid")
    ev.process(torch.from_numpy(s).float(), {"label": torch.from_numpy(y).float()})
    keep = [k for k in range(6) if k != 2]
    probs = torch.sigmoid(torch.from_numpy(s).float().double()).numpy()
    ref = roc_auc_score(y[:, keep], probs[:, keep], average="macro")
    assert ev.evaluate()["auc"] == pytest.approx(ref, abs=1e-12)


def test_accuracy_topk_only_when_enough_classes():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    labels = torch.tensor([1, 0, 0, 1])
    ev = AccuracyEvaluator(activation="softmax")
    ev.process(logits, {"label": labels})
    res = ev.evaluate()
    assert res == {"top1": 0.5}  # 3 classes: no top5
    g = torch.Generator().manual_seed(0)
    logits10 = torch.randn(30, 10, generator=g)
    labels10 = torch.randint(0, 10, (30,), generator=g)
    ev.reset()
    ev.process(logits10, {"label": labels10})
    res = ev.evaluate()
    top5 = logits10.topk(5, 1).indices
    assert res["top1"] == pytest.approx(float((logits10.argmax(1) == labels10).double().mean()))
    assert res["top5"] == pytest.approx(float((top5 == labels10[:, None]).any(1).double().mean()))
    # soft / one-hot float labels: the argmax is the label
    ev.reset()
    ev.process(logits10, {"label": torch.nn.functional.one_hot(labels10, 10).float()})
    assert ev.evaluate()["top1"] == res["top1"]


def test_multi_view_probabilities_are_averaged_per_group():
    # Sample 0 (label 0): views predict 1 (weakly), 1 (weakly), 0 (strongly) -> average says 0.
    # Sample 1 (label 1): a single view predicting 1.
    logits = torch.tensor([[0.0, 0.5], [0.0, 0.5], [5.0, 0.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0, 0, 1])
    groups = torch.tensor([7, 7, 7, 9])
    ev = AccuracyEvaluator(activation="softmax")
    # views of group 7 arrive in two different batches
    ev.process(logits[:2], {"label": labels[:2], "view_group": groups[:2]})
    ev.process(logits[2:], {"label": labels[2:], "view_group": groups[2:]})
    assert ev.evaluate() == {"top1": 1.0}  # 2 samples, both right; per view it would be 0.5
    ev_plain = AccuracyEvaluator(activation="softmax")
    ev_plain.process(logits, {"label": labels})
    assert ev_plain.evaluate() == {"top1": 0.5}
    # mAP uses the averaged probabilities too
    mev = MAPEvaluator(activation="softmax")
    mev.process(logits, {"label": labels, "view_group": groups})
    avg = torch.stack([torch.softmax(logits[:3].double(), 1).mean(0), torch.softmax(logits[3].double(), 0)])
    assert mev.evaluate()["mAP"] == pytest.approx(_sk_map(np.eye(2)[[0, 1]], avg.numpy()), abs=1e-12)


def test_views_with_different_labels_raise():
    ev = AccuracyEvaluator(activation="softmax")
    ev.process(torch.zeros(2, 3), {"label": torch.tensor([0, 1]), "view_group": torch.tensor([4, 4])})
    with pytest.raises(ValueError, match="view_group"):
        ev.evaluate()


def test_evaluator_without_labels_names_the_problem():
    ev = AccuracyEvaluator(activation="softmax")
    with pytest.raises(KeyError, match="label"):
        ev.process(torch.zeros(2, 3), {"input": torch.zeros(2)})


class _FixedLogits(nn.Module):
    """Returns the batch's input as logits; records the train flag it saw."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.seen_training = []

    def forward(self, batch):
        self.seen_training.append(self.training)
        return batch["input"] * self.w


def test_inference_on_dataset_eval_mode_no_grad_skips_empty_batches(make_cfg):
    cfg = make_cfg("TEST.EVALUATORS", ["accuracy", "map"])
    model = _FixedLogits()
    model.train()
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    labels = torch.tensor([0, 1, 1, 1])
    grads = []

    def loader():
        yield {"input": logits[:2], "label": labels[:2], "num_skipped": torch.tensor(0)}
        yield {"num_skipped": torch.tensor(3), "empty": True}  # every item unreadable
        x = logits[2:]
        grads.append(torch.is_grad_enabled())
        yield {"input": x, "label": labels[2:], "num_skipped": torch.tensor(1)}

    res = inference_on_dataset(model, loader(), build_evaluators(cfg), device="cpu")
    assert res["top1"] == 0.75
    assert "mAP" in res and 0.0 <= res["mAP"] <= 1.0
    assert model.seen_training == [False, False]
    assert model.training  # restored
    assert grads == [False]


def test_registered_evaluators_and_unknown_name():
    assert {"accuracy", "map", "auc"} <= set(EVALUATOR.names())
    with pytest.raises(KeyError, match="accuracy"):
        EVALUATOR.get("accurracy")
