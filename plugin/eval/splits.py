"""Seeded index subsets of a split: K samples per class, N-way K-shot folds, and a held-out share for choosing
checkpoints.

K per class feeds the few-shot adapter (``mode=fewshot``) and the low-shot SVM probes
(``svm.low_shot``); N-way K-shot folds feed ``mode=nshot`` (:func:`draw_nway_kshot`); the held-out share lets
``pretrain`` and the adapters choose an epoch on training objects, never on the test split.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

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


def draw_nway_kshot(support_labels: Sequence[int], query_labels: Optional[Sequence[int]], ways: int, shots: int,
                    queries: int, folds: int, seed: int) -> List[Dict[str, Any]]:
    """N-way K-shot folds: per fold ``ways`` classes, ``shots`` support and ``queries`` query samples of each.

    The protocol of Point-BERT's ``datasets/generate_few_shot_data.py`` (used by Point-MAE and I2P-MAE): per fold
    the N classes are drawn at random, then per class K support samples from the support pool (the train split)
    and Q query samples from the query pool (the test split); label ``i`` is the ``i``-th drawn class. With
    ``query_labels`` None both come from the one pool, without overlap. Fold ``f`` draws from
    ``np.random.default_rng([seed, f])``, so it does not depend on the number of folds.

    Args:
        support_labels: (S,) integer class of every sample of the support pool.
        query_labels: (Q,) integer class of every sample of the query pool; None: the support pool.
        ways: N, classes per fold, >= 2.
        shots: K, support samples per class, >= 1.
        queries: Q, query samples per class, >= 1.
        folds: number of folds, >= 1.
        seed: seed of the draws.

    Returns:
        One dict per fold: ``classes`` (the N class ids; their position is the remapped label), ``support`` and
        ``query`` (sample indices into their pools, grouped by class in ``classes`` order).

    Raises:
        ConfigError: a setting out of range, more ways than classes, or a class with fewer than K (or Q, or
        K + Q for one pool) samples.
    """
    for key, value, least in (("ways", ways, 2), ("shots", shots, 1), ("queries", queries, 1), ("folds", folds, 1)):
        if int(value) < least:
            raise ConfigError(f"nshot.{key} is {value}: set it to {least} or more.")
    support = np.asarray(support_labels).astype(np.int64).reshape(-1)
    shared = query_labels is None
    query = support if shared else np.asarray(query_labels).astype(np.int64).reshape(-1)
    classes = np.unique(support)
    if ways > len(classes):
        raise ConfigError(f"nshot.ways={ways} exceeds the {len(classes)} classes of the data: set nshot.ways to at "
                          f"most {len(classes)}.")
    for label in classes:
        have_support, have_query = int(np.sum(support == label)), int(np.sum(query == label))
        if shared and have_support < shots + queries:
            raise ConfigError(f"Class {label} has {have_support} samples, fewer than nshot.shots + nshot.queries = "
                              f"{shots + queries}: lower nshot.shots or nshot.queries.")
        if not shared and have_support < shots:
            raise ConfigError(f"Class {label} has {have_support} train samples, fewer than nshot.shots={shots}: lower "
                              f"nshot.shots to at most {have_support}.")
        if not shared and have_query < queries:
            raise ConfigError(f"Class {label} has {have_query} test samples, fewer than nshot.queries={queries}: lower "
                              f"nshot.queries to at most {have_query}.")
    drawn = []
    for fold in range(int(folds)):
        rng = np.random.default_rng([int(seed), fold])
        chosen = rng.choice(classes, size=int(ways), replace=False)
        fold_support, fold_query = [], []
        for label in chosen:
            pool = rng.permutation(np.flatnonzero(support == label))
            fold_support.extend(pool[:shots].tolist())
            rest = pool[shots:] if shared else rng.permutation(np.flatnonzero(query == label))
            fold_query.extend(rest[:queries].tolist())
        drawn.append({"classes": [int(c) for c in chosen], "support": [int(i) for i in fold_support],
                      "query": [int(i) for i in fold_query]})
    return drawn


def remap_labels(labels: Sequence[int], classes: Sequence[int]) -> np.ndarray:
    """Labels of a fold's samples as ``0..N-1``: the position of each label in the fold's ``classes``.

    Args:
        labels: original class ids, each one of ``classes``.
        classes: the fold's class ids in drawn order (:func:`draw_nway_kshot`).
    """
    lookup = {int(c): i for i, c in enumerate(classes)}
    return np.array([lookup[int(label)] for label in np.asarray(labels).reshape(-1)], dtype=np.int64)
