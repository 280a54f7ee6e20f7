"""The linear SVM probe: accuracy on separable data, C chosen on the training split only, folds, bad input."""
import re

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from plugin.errors import BadInputError, ConfigError
from plugin.eval import fit_linear_svm, linear_probe, score
from plugin.eval.linear_svm import cv_folds


def blobs(per_class, spread, seed, dim=8, classes=3):
    """Gaussian blobs around fixed class centres; ``spread`` sets how much they overlap."""
    centres = np.random.default_rng(100).normal(size=(classes, dim)) * 3
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), per_class)
    return centres[y] + spread * rng.normal(size=(len(y), dim)), y


def test_separable_features_are_classified_perfectly():
    train_x, train_y = blobs(20, 0.1, seed=0)
    test_x, test_y = blobs(10, 0.1, seed=1)
    fitted, chosen_c, cv_scores = fit_linear_svm(train_x, train_y, cs=(0.01, 1.0), folds=5)
    assert score(fitted, test_x, test_y) == {"oa": 100.0, "macc": 100.0}
    assert chosen_c in (0.01, 1.0) and set(cv_scores) == {0.01, 1.0}
    assert cv_scores[chosen_c] == max(cv_scores.values()) == 100.0
    assert chosen_c == 0.01  # ties go to the smallest C


def test_macc_averages_the_classes_present():
    train_x, train_y = blobs(20, 0.1, seed=0)
    fitted, _, _ = fit_linear_svm(train_x, train_y, cs=(1.0,), folds=2)
    x = np.r_[train_x[:1], train_x[20:23]]          # one of class 0, three of class 1, no class 2
    y = np.array([2, 1, 1, 1])                       # the class-0 sample mislabelled as 2
    assert score(fitted, x, y) == pytest.approx({"oa": 75.0, "macc": 50.0})


def test_c_is_chosen_on_training_rows_only(monkeypatch):
    train_x, train_y = blobs(30, 2.5, seed=0)       # overlapping: C matters
    test_x, test_y = blobs(15, 2.5, seed=1)
    train_rows = {row.tobytes() for row in train_x}
    seen = []
    original_fit = Pipeline.fit

    def spy_fit(self, x, y=None, **kwargs):
        seen.append(np.asarray(x))
        return original_fit(self, x, y, **kwargs)

    monkeypatch.setattr(Pipeline, "fit", spy_fit)
    result = linear_probe(train_x, train_y, test_x, test_y, cs=(0.001, 0.01, 0.1, 1.0), folds=3)
    assert len(seen) == 4 * 3 + 1                    # 4 Cs x 3 folds, then the refit
    assert all(row.tobytes() in train_rows for x in seen for row in x)
    assert len(seen[-1]) == len(train_x)             # the refit uses every training row
    assert len(set(result["cv_oa"].values())) > 1    # the candidates really differ

    shuffled = linear_probe(train_x, train_y, test_x, np.random.default_rng(0).permutation(test_y),
                            cs=(0.001, 0.01, 0.1, 1.0), folds=3)
    assert shuffled["C"] == result["C"] and shuffled["cv_oa"] == result["cv_oa"]
    assert shuffled["oa"] != result["oa"]            # only the test score moved


def test_folds_fall_back_to_the_smallest_class(caplog):
    x, y = blobs(10, 0.1, seed=0)
    keep = np.r_[np.arange(10), np.arange(10, 13), np.arange(20, 30)]   # class 1 has 3 samples
    assert cv_folds(y[keep], 5) == 3 and "3-fold instead of 5-fold" in caplog.text
    fitted, _, _ = fit_linear_svm(x[keep], y[keep], cs=(1.0,), folds=5)
    assert score(fitted, x, y)["oa"] == 100.0
    assert cv_folds(y, 5) == 5


@pytest.mark.parametrize("x, y, error, message", [
    (np.r_[np.zeros((3, 2)), np.ones((1, 2))], np.array([0, 0, 0, 1]), BadInputError, "Class 1 has a single"),
    (np.zeros((4, 2)), np.zeros(4, dtype=int), BadInputError, "holds only class 0"),
    (np.array([[0.0, np.nan], [1, 1], [2, 2], [3, 3]]), np.array([0, 0, 1, 1]), BadInputError,
     "NaN or infinite values in 1 samples (first: sample 0)"),
    (np.array([[0.0, np.inf], [1, 1], [2, 2], [3, 3]]), np.array([0, 0, 1, 1]), BadInputError, "NaN or infinite"),
    (np.zeros((4,)), np.array([0, 0, 1, 1]), BadInputError, "expected (samples, channels)"),
    (np.zeros((4, 2)), np.array([0, 1, 1]), BadInputError, "pass one label per vector"),
    (np.zeros((4, 2)), np.array([0.0, 0.5, 1, 1]), BadInputError, "not integers"),
])
def test_bad_training_input(x, y, error, message):
    with pytest.raises(error, match=re.escape(message)):
        fit_linear_svm(x, y, cs=(1.0,), folds=2)


@pytest.mark.parametrize("cs, folds, message", [
    ((), 2, "give one or more positive values in svm.cs"),
    ((0.0, 1.0), 2, "give one or more positive values"),
    ((1.0,), 1, "set svm.folds to 2 or more"),
])
def test_bad_search_settings(cs, folds, message):
    x, y = blobs(5, 0.1, seed=0)
    with pytest.raises(ConfigError, match=message):
        fit_linear_svm(x, y, cs=cs, folds=folds)


def test_scoring_checks_the_feature_width():
    x, y = blobs(5, 0.1, seed=0)
    fitted, _, _ = fit_linear_svm(x, y, cs=(1.0,), folds=2)
    with pytest.raises(BadInputError, match="have 3 channels but the SVM was fitted on 8"):
        score(fitted, x[:, :3], y)
    with pytest.raises(BadInputError, match="evaluation features hold NaN"):
        score(fitted, np.full_like(x, np.nan), y)


def test_draw_per_class_keeps_k_of_each_class_and_all_of_a_smaller_one():
    from plugin.eval import draw_per_class

    y = np.array([0] * 10 + [1] * 3 + [2] * 6)
    rows, short = draw_per_class(y, 4, np.random.default_rng(0))
    assert np.bincount(y[rows]).tolist() == [4, 3, 4] and len(set(rows)) == len(rows) and short == {1: 3}
    assert np.array_equal(rows, draw_per_class(y, 4, np.random.default_rng(0))[0])       # seeded
    assert not np.array_equal(rows, draw_per_class(y, 4, np.random.default_rng(1))[0])


def test_low_shot_probe_matches_hand_fitted_svms_and_separates_good_from_bad_features():
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    from plugin.eval import draw_per_class
    from plugin.eval.linear_svm import low_shot_probe

    train_x, train_y = blobs(30, 0.3, seed=0)
    test_x, test_y = blobs(20, 0.3, seed=1)
    result = low_shot_probe(train_x, train_y, test_x, test_y, c=0.1, shots=[1, 5], draws=3, seed=7)
    assert set(result) == {"1", "5"} and result["5"]["draws"] == 3
    expected = []
    for i in range(3):                                  # draw i uses seed + i
        rows, _ = draw_per_class(train_y, 5, np.random.default_rng(7 + i))
        scaler = StandardScaler().fit(train_x[rows])
        svm = LinearSVC(C=0.1, max_iter=20000, random_state=7).fit(scaler.transform(train_x[rows]), train_y[rows])
        expected.append(100 * np.mean(svm.predict(scaler.transform(test_x)) == test_y))
    assert result["5"]["oa_mean"] == pytest.approx(np.mean(expected)) and result["5"]["oa_std"] == pytest.approx(np.std(expected))
    noise = np.random.default_rng(2).normal(size=train_x.shape)                    # label-free features
    bad = low_shot_probe(noise, train_y, np.random.default_rng(3).normal(size=test_x.shape), test_y,
                         c=0.1, shots=[5], draws=3)
    assert result["5"]["oa_mean"] > 90 and bad["5"]["oa_mean"] < 60


def test_low_shot_probe_rejects_bad_settings():
    from plugin.eval.linear_svm import low_shot_probe

    x, y = blobs(5, 0.1, seed=0)
    with pytest.raises(ConfigError, match="svm.low_shot needs shots >= 1"):
        low_shot_probe(x, y, x, y, c=1.0, shots=[0], draws=2)
