"""Seeded index subsets of a split: K samples per class, and a held-out share for choosing checkpoints.

K per class feeds the few-shot adapter (``mode=fewshot``) and the low-shot SVM probes
(``svm.low_shot``); the held-out share lets ``pretrain`` and the adapters choose an epoch on training
objects, never on the test split.
"""
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..errors import ConfigError


def draw_per_class(labels: np.ndarray, per_class: int, rng: np.random.Generator,
                   num_classes: Optional[int] = None) -> Tuple[np.ndarray, Dict[int, int]]:
    """``per_class`` sample indices of every class, drawn without replacement; smaller classes keep all they have.

    Classes are visited in increasing order; each class with at least ``per_class`` samples takes one
    ``rng.choice`` draw, a smaller one is taken whole without drawing.

    Args:
        labels: (N,) integer class of every sample.
        per_class: K, samples per class, >= 1.
        rng: the generator of the draws (the same seed and labels give the same indices).
        num_classes: the number of classes, so that classes without any sample are reported too; None: the
            classes present in ``labels``.

    Returns:
        The chosen indices (sorted, int64) and ``{label: available}`` for every class with fewer than K samples.
    """
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    classes = range(int(num_classes)) if num_classes else np.unique(labels)
    chosen, short = [], {}
    for label in classes:
        available = np.flatnonzero(labels == label)
        if len(available) < per_class:
            short[int(label)] = len(available)
            chosen.append(available)
        else:
            chosen.append(rng.choice(available, size=int(per_class), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64), short


def holdout_indices(size: int, fraction: float, seed: int,
                    key: str = "pretrain.holdout") -> Tuple[List[int], List[int]]:
    """A seeded split of ``range(size)`` into kept and held-out indices (both sorted).

    Args:
        size: number of objects.
        fraction: share held out, in (0, 1); at least one object is held out and one kept.
        seed: seed of the permutation.
        key: the config key that set ``fraction``, named in errors.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"{key} is {fraction}: set it to a share in (0, 1), e.g. 0.1.")
    held_count = max(1, int(round(fraction * size)))
    if held_count >= size:
        raise ConfigError(f"{key}={fraction} of {size} objects leaves none to train on: lower {key} or use more "
                          f"objects.")
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[held_count:]), sorted(order[:held_count])
