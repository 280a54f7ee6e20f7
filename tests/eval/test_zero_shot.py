"""Zero-shot logits (CLIP2Point Eq. 11) and accuracies on constructed cases with known answers."""
import math

import numpy as np
import pytest
import torch

from plugin.errors import BadInputError
from plugin.eval import per_class_accuracy, topk_accuracy, zero_shot_logits, zero_shot_metrics


def test_logits_average_the_per_view_cosines() -> None:
    g = torch.Generator().manual_seed(0)
    views, text = torch.randn(4, 3, 8, generator=g), torch.randn(5, 8, generator=g)
    logits = zero_shot_logits(views, text)
    assert logits.shape == (4, 5)
    by_hand = torch.zeros(4, 5)
    for b in range(4):
        for c in range(5):
            cosines = [torch.dot(views[b, v], text[c]) / (views[b, v].norm() * text[c].norm()) for v in range(3)]
            by_hand[b, c] = sum(cosines) / 3
    assert torch.allclose(logits, by_hand, atol=1e-6)
    assert torch.allclose(zero_shot_logits(views * 7.0, text * 0.1), logits, atol=1e-6)  # scale-free
    assert torch.allclose(zero_shot_logits(views[:, 0], text), zero_shot_logits(views[:, :1], text))


def test_logits_reject_mismatched_dimensions() -> None:
    with pytest.raises(BadInputError, match="same CLIP"):
        zero_shot_logits(torch.zeros(2, 3, 8), torch.zeros(5, 4))


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
    per_class = per_class_accuracy(logits[keep], labels[keep])
    assert np.allclose(per_class[:5], [50.0, 50.0, 100.0, 0.0, 0.0]) and math.isnan(per_class[5])
    metrics = zero_shot_metrics(logits[keep], labels[keep], [f"c{i}" for i in range(6)])
    assert metrics["samples"] == 7 and metrics["macc"] == pytest.approx(40.0)
    assert metrics["top1"] == pytest.approx(100 * 3 / 7) and set(metrics["per_class"]) == {"c0", "c1", "c2", "c3", "c4"}


def test_accuracy_rejects_mismatched_lengths() -> None:
    with pytest.raises(BadInputError, match="one row of logits per label"):
        topk_accuracy(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long))
