"""A linear SVM probe: standardised features, ``C`` chosen by stratified k-fold CV on the training split only.

The test split is only ever passed to :func:`score`, after the fit, so the choice of ``C`` cannot see it.
"""
import logging
import warnings
from typing import Dict, List, Sequence, Tuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from ..errors import BadInputError, ConfigError
from .metrics import accuracy
from .splits import draw_per_class

LOGGER = logging.getLogger("plugin")
DEFAULT_CS = (0.001, 0.01, 0.1, 1.0)
MAX_ITER = 20000  # liblinear iterations; standardised features converge well before this


def check_features(x: np.ndarray, y: np.ndarray, where: str) -> Tuple[np.ndarray, np.ndarray]:
    """Validate features ``x`` (N,C) and integer labels ``y`` (N,); returns them as float64 and int64.

    Args:
        x: one feature vector per sample.
        y: one class label per sample.
        where: the split named in error messages (``training``, ``test``).

    Raises:
        BadInputError: wrong shapes, no samples, non-integer labels or non-finite features.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or 0 in x.shape:
        raise BadInputError(f"The {where} features have shape {x.shape}: expected (samples, channels) with at "
                            f"least one of each; check the feature extraction of that split.")
    if y.shape != (x.shape[0],):
        raise BadInputError(f"The {where} labels have shape {y.shape} for {x.shape[0]} feature vectors: pass one "
                            f"label per vector.")
    if not np.issubdtype(y.dtype, np.integer):
        raise BadInputError(f"The {where} labels are {y.dtype}, not integers: pass class indices.")
    finite = np.isfinite(x)
    if not finite.all():
        rows = np.flatnonzero(~finite.all(axis=1))
        raise BadInputError(f"The {where} features hold NaN or infinite values in {len(rows)} samples (first: "
                            f"sample {rows[0]}): check the encoder weights and the input clouds.")
    return x.astype(np.float64, copy=False), y.astype(np.int64, copy=False)


def check_search(cs: Sequence[float], folds: int) -> List[float]:
    """Validate the search settings; returns the distinct ``cs`` in increasing order.

    Args:
        cs: candidate values of ``C``, all positive.
        folds: CV folds, at least 2.

    Raises:
        ConfigError: no or non-positive ``cs``, or fewer than 2 folds.
    """
    cs = sorted({float(c) for c in cs or []})
    if not cs or cs[0] <= 0:
        raise ConfigError(f"SVM C candidates {cs}: give one or more positive values in svm.cs, e.g. [0.01, 0.1, 1].")
    if int(folds) < 2:
        raise ConfigError(f"Cross-validation needs at least 2 folds, got {folds}: set svm.folds to 2 or more.")
    return cs


def cv_folds(y: np.ndarray, folds: int) -> int:
    """The number of stratified CV folds for labels ``y``: ``folds``, or fewer when a class is smaller.

    Args:
        y: training labels.
        folds: the folds asked for.

    Raises:
        BadInputError: fewer than two classes, or a class with a single training sample.
    """
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise BadInputError(f"The training split holds only class {classes[0]}: a classifier needs at least two "
                            f"classes; check the dataset split.")
    smallest = int(counts.min())
    if smallest < 2:
        raise BadInputError(f"Class {classes[counts.argmin()]} has a single training sample: cross-validation "
                            f"needs at least 2 per class; add training samples or drop that class.")
    if smallest < folds:
        LOGGER.warning(f"class {classes[counts.argmin()]} has only {smallest} training samples: "
                       f"{smallest}-fold instead of {folds}-fold cross-validation")
    return min(int(folds), smallest)


def svm_pipeline(seed: int, c: float = 1.0) -> Pipeline:
    """``StandardScaler`` followed by a ``LinearSVC`` with ``C = c``, seeded.

    Args:
        seed: the solver's random state.
        c: the SVM's ``C`` (the grid search of :func:`fit_linear_svm` sets it).
    """
    return Pipeline([("scale", StandardScaler()), ("svm", LinearSVC(C=c, max_iter=MAX_ITER, random_state=seed))])


def fit_linear_svm(train_x: np.ndarray, train_y: np.ndarray, cs: Sequence[float] = DEFAULT_CS, folds: int = 5,
                   seed: int = 0) -> Tuple[Pipeline, float, Dict[float, float]]:
    """Fit ``StandardScaler`` + ``LinearSVC`` with the ``C`` of best stratified k-fold CV accuracy.

    Args:
        train_x: training features (N,C).
        train_y: training labels (N,).
        cs: candidate values of ``C``; ties go to the smallest (strongest regularisation).
        folds: CV folds, reduced to the size of the smallest class when that is smaller.
        seed: seeds the fold shuffling and the solver.

    Returns:
        The pipeline refitted on all training samples with the chosen ``C``, that ``C``, and the mean CV
        accuracy in percent of every candidate.
    """
    cs = check_search(cs, folds)
    x, y = check_features(train_x, train_y, "training")
    n_folds = cv_folds(y, folds)
    search = GridSearchCV(svm_pipeline(seed), {"svm__C": cs}, scoring="accuracy", refit=True, error_score="raise",
                          cv=StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        search.fit(x, y)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        LOGGER.warning(f"LinearSVC did not converge in {MAX_ITER} iterations for some C: prefer smaller svm.cs")
    cv_scores = {c: 100.0 * float(s) for c, s in zip(cs, search.cv_results_["mean_test_score"])}
    return search.best_estimator_, float(search.best_params_["svm__C"]), cv_scores


def score(fitted: Pipeline, x: np.ndarray, y: np.ndarray) -> Dict[str, float]:
    """Overall accuracy ``oa`` and mean class accuracy ``macc`` (over classes present in ``y``), in percent.

    Args:
        fitted: a classifier from :func:`fit_linear_svm`.
        x: features (N,C) with the training feature width.
        y: labels (N,).
    """
    x, y = check_features(x, y, "evaluation")
    if x.shape[1] != fitted.n_features_in_:
        raise BadInputError(f"The evaluation features have {x.shape[1]} channels but the SVM was fitted on "
                            f"{fitted.n_features_in_}: extract both splits with the same encoder and pooling.")
    return accuracy(fitted.predict(x), y)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 cs: Sequence[float] = DEFAULT_CS, folds: int = 5, seed: int = 0) -> Dict[str, object]:
    """Fit on the training split (``C`` by CV there), then score the test split once.

    Args:
        train_x, train_y: training features (N,C) and labels (N,).
        test_x, test_y: test features (M,C) and labels (M,).
        cs, folds, seed: as in :func:`fit_linear_svm`.

    Returns:
        ``oa`` and ``macc`` on the test split, the chosen ``C`` and ``cv_oa`` (CV accuracy per ``C``).
    """
    fitted, chosen_c, cv_scores = fit_linear_svm(train_x, train_y, cs, folds, seed)
    return dict(score(fitted, test_x, test_y), C=chosen_c, cv_oa={str(c): s for c, s in cv_scores.items()})


def low_shot_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                   c: float, shots: Sequence[int], draws: int, seed: int = 0) -> Dict[str, Dict[str, float]]:
    """Linear SVMs fitted on ``k`` training samples per class, scored on the whole test split.

    Saturated benchmarks (a few easy classes) leave the full probe at ~100% for any encoder; with a
    handful of samples per class the feature quality shows. ``C`` is fixed (the full probe's CV choice:
    one sample per class allows no cross-validation), and every ``k`` is averaged over ``draws`` draws.

    Args:
        train_x, train_y: training features (N,C) and labels (N,).
        test_x, test_y: test features (M,C) and labels (M,).
        c: the SVM's ``C``.
        shots: the values of ``k``, each >= 1.
        draws: random draws per ``k``, >= 1.
        seed: seeds the draws (:func:`~plugin.eval.splits.draw_per_class`; draw ``i`` of every ``k`` uses
            ``seed + i``) and the solver.

    Returns:
        ``{str(k): {"oa_mean", "oa_std", "macc_mean", "draws"}}`` in percent.
    """
    if not shots or min(int(k) for k in shots) < 1 or int(draws) < 1:
        raise ConfigError(f"svm.low_shot needs shots >= 1 and draws >= 1, got shots={list(shots or [])} and "
                          f"draws={draws}: e.g. svm.low_shot.shots=[1,5] svm.low_shot.draws=10.")
    x, y = check_features(train_x, train_y, "training")
    out = {}
    for k in shots:
        scores = []
        for i in range(int(draws)):
            rows, _ = draw_per_class(y, int(k), np.random.default_rng(seed + i))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                scores.append(score(svm_pipeline(seed, c).fit(x[rows], y[rows]), test_x, test_y))
        oa, macc = np.array([s["oa"] for s in scores]), np.array([s["macc"] for s in scores])
        out[str(int(k))] = {"oa_mean": float(oa.mean()), "oa_std": float(oa.std()), "macc_mean": float(macc.mean()),
                            "draws": int(draws)}
    return out
