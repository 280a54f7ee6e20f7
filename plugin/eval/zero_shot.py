"""Zero-shot classification from multi-view image features and CLIP text features (CLIP2Point, Eq. 11).

Each of the V views of a shape is scored against every class by cosine similarity; the shape's
logits are the mean over its views. Accuracies are in percent.
"""
from typing import Dict, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BadInputError


def zero_shot_logits(view_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """Logits (B, C): cosine similarity of each view to each class, averaged over the views.

    Args:
        view_features: (B, V, D) per-view image features, or (B, D) for a single view; normalised here.
        text_features: (C, D) class embeddings; normalised here.
    """
    if view_features.dim() == 2:
        view_features = view_features.unsqueeze(1)
    if view_features.dim() != 3 or text_features.dim() != 2 or view_features.shape[-1] != text_features.shape[-1]:
        raise BadInputError(f"Zero-shot needs view features (B,V,D) and text features (C,D) of the same D, got "
                            f"{tuple(view_features.shape)} and {tuple(text_features.shape)}: encode views and text "
                            f"with the same CLIP.")
    views = F.normalize(view_features.float(), dim=-1)
    text = F.normalize(text_features.float().to(views.device), dim=-1)
    # CLIP2Point Eq. 11: logits = (1/V) sum_v  f_v W_t^T, with f_v and W_t L2-normalised
    return torch.einsum("bvd,cd->bvc", views, text).mean(dim=1)


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


def per_class_accuracy(logits: torch.Tensor, labels: torch.Tensor, num_classes: Optional[int] = None) -> np.ndarray:
    """Top-1 accuracy in percent per class (C,), NaN for classes without samples.

    Args:
        logits: (N, C) class scores.
        labels: (N,) true class indices.
        num_classes: C (default: the number of logit columns).
    """
    _check(logits, labels)
    num_classes = num_classes or logits.shape[1]
    predicted = logits.argmax(dim=1).cpu().numpy()
    truth = labels.cpu().numpy().astype(np.int64)
    total = np.bincount(truth, minlength=num_classes).astype(np.float64)
    correct = np.bincount(truth[predicted == truth], minlength=num_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 100.0 * correct / total, np.nan)


def zero_shot_metrics(logits: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str]) -> Dict[str, object]:
    """Top-1 and top-5 OA, mean class accuracy over classes with samples, per-class accuracy, and sample count.

    Args:
        logits: (N, C) class scores.
        labels: (N,) true class indices.
        class_names: the C class names, in label order.
    """
    top = topk_accuracy(logits, labels, (1, 5))
    per_class = per_class_accuracy(logits, labels, len(class_names))
    present = ~np.isnan(per_class)
    return {"top1": top[1], "top5": top[5], "macc": float(per_class[present].mean()) if present.any() else 0.0,
            "per_class": {name: float(acc) for name, acc, seen in zip(class_names, per_class, present) if seen},
            "samples": int(len(labels))}
