"""OA, per-class and mean class accuracy, top-k accuracy and the figures of logits, on known cases."""
import math

import numpy as np
import pytest
import torch

from plugin.clip import zero_shot_logits
from plugin.errors import BadInputError
from plugin.eval import accuracy, logit_metrics, mean_class_accuracy, per_class_accuracy, topk_accuracy


def constructed_case():
    """Six one-hot class directions; samples 0-5 face their label, samples 6-11 face label+1 with a 0.5 pull
    towards their label, so top-1 misses them but the label is their second-best class."""
    text = torch.eye(6)
    labels = torch.tensor(list(range(6)) * 2)
    views = torch.zeros(12, 2, 6)
    for i, label in enumerate(labels.tolist()):
        if i < 6:
            views[i, :, label] = 1.0
        else:
            views[i, :, (label + 1) % 6] = 1.0
            views[i, :, label] = 0.5
    return zero_shot_logits(views, text), labels


def test_topk_accuracy_on_a_known_case() -> None:
    logits, labels = constructed_case()
    assert topk_accuracy(logits, labels, ks=(1, 2, 5)) == {1: 50.0, 2: 100.0, 5: 100.0}
    assert topk_accuracy(logits, labels, ks=(10,)) == {10: 100.0}  # k clipped to C
    assert topk_accuracy(logits[:6], labels[:6]) == {1: 100.0, 5: 100.0}


def test_per_class_and_mean_class_accuracy() -> None:
    logits, labels = constructed_case()
    keep = torch.tensor([0, 1, 2, 6, 7, 9, 10])  # classes 0, 1, 2, 3 (one miss each for 0, 1), 4; none of 5
    per_class = per_class_accuracy(logits[keep].argmax(dim=1).numpy(), labels[keep].numpy(), 6)
    assert np.allclose(per_class[:5], [50.0, 50.0, 100.0, 0.0, 0.0]) and math.isnan(per_class[5])
    assert mean_class_accuracy(per_class) == pytest.approx(40.0)
    metrics = logit_metrics(logits[keep], labels[keep], [f"c{i}" for i in range(6)])
    assert metrics["samples"] == 7 and metrics["macc"] == pytest.approx(40.0)
    assert metrics["top1"] == pytest.approx(100 * 3 / 7) and set(metrics["per_class"]) == {"c0", "c1", "c2", "c3", "c4"}


def test_overall_and_mean_class_accuracy_of_predictions() -> None:
    predicted, labels = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 2, 0])
    assert accuracy(predicted, labels) == pytest.approx({"oa": 100 * 4 / 6, "macc": 100 * (1 / 2 + 1 / 2 + 1) / 3})
    assert accuracy(predicted, labels, num_classes=5)["macc"] == pytest.approx(100 * 2 / 3)  # absent classes skipped
    assert accuracy(np.array([3]), np.array([1])) == {"oa": 0.0, "macc": 0.0}          # predicted beyond the labels


def test_accuracy_rejects_mismatched_lengths() -> None:
    with pytest.raises(BadInputError, match="one row of logits per label"):
        topk_accuracy(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long))
