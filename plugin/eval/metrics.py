"""Classification figures in percent: overall accuracy (OA), per-class and mean class accuracy (mAcc), top-k.

One implementation for every mode: supervised ``train``/``test``, the SVM probe, zero-shot and the
adapters. The mean class accuracy averages the classes that have samples.
"""
from typing import Dict, Iterable, Optional, Sequence

import numpy as np
import torch

from ..errors import BadInputError


def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray, num_classes: Optional[int] = None) -> np.ndarray:
    """Accuracy in percent per class (C,), NaN for classes without samples.

    Args:
        predicted: (N,) predicted class indices.
        labels: (N,) true class indices.
        num_classes: C (default: one more than the largest label or prediction).
    """
    predicted, labels = np.asarray(predicted).reshape(-1), np.asarray(labels).reshape(-1).astype(np.int64)
    if num_classes is None:
        num_classes = int(max(labels.max(initial=-1), predicted.max(initial=-1))) + 1
    total = np.bincount(labels, minlength=num_classes).astype(np.float64)
    correct = np.bincount(labels[predicted == labels], minlength=num_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 100.0 * correct / total, np.nan)


def mean_class_accuracy(per_class: np.ndarray) -> float:
    """The mean of :func:`per_class_accuracy` over the classes with samples (0 when none has any).

    Args:
        per_class: (C,) accuracies in percent, NaN for classes without samples.
    """
    present = ~np.isnan(per_class)
    return float(per_class[present].mean()) if present.any() else 0.0


def accuracy(predicted: np.ndarray, labels: np.ndarray, num_classes: Optional[int] = None) -> Dict[str, float]:
    """Overall accuracy ``oa`` and mean class accuracy ``macc`` (over the classes present), in percent.

    Args:
        predicted, labels, num_classes: as in :func:`per_class_accuracy`.
    """
    predicted, labels = np.asarray(predicted).reshape(-1), np.asarray(labels).reshape(-1)
    oa = 100.0 * int((predicted == labels).sum()) / max(len(labels), 1)
    return {"oa": oa, "macc": mean_class_accuracy(per_class_accuracy(predicted, labels, num_classes))}


def _check(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.dim() != 2 or labels.dim() != 1 or len(logits) != len(labels):
        raise BadInputError(f"Accuracy needs logits (N,C) and labels (N,), got {tuple(logits.shape)} and "
                            f"{tuple(labels.shape)}: pass one row of logits per label.")


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: Iterable[int] = (1, 5)) -> Dict[int, float]:
    """Top-k accuracy in percent for each k (k above C is clipped to C, giving 100).

    Args:
        logits: (N, C) class scores.
        labels: (N,) true class indices.
        ks: the k values.
    """
    _check(logits, labels)
    labels = labels.to(logits.device).long()
    result = {}
    for k in ks:
        kk = max(1, min(int(k), logits.shape[1]))
        hit = (logits.topk(kk, dim=1).indices == labels[:, None]).any(dim=1)
        result[int(k)] = 100.0 * float(hit.double().mean()) if len(labels) else 0.0
    return result


def logit_metrics(logits: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str]) -> Dict[str, object]:
    """Top-1 and top-5 OA, mean class accuracy, per-class accuracy (classes with samples) and the sample count.

    Args:
        logits: (N, C) class scores.
        labels: (N,) true class indices.
        class_names: the C class names, in label order.
    """
    top = topk_accuracy(logits, labels, (1, 5))
    per_class = per_class_accuracy(logits.argmax(dim=1).cpu().numpy(), labels.cpu().numpy(), len(class_names))
    present = ~np.isnan(per_class)
    return {"top1": top[1], "top5": top[5], "macc": mean_class_accuracy(per_class),
            "per_class": {name: float(acc) for name, acc, seen in zip(class_names, per_class, present) if seen},
            "samples": int(len(labels))}
