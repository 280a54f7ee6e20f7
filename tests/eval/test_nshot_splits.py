"""The N-way K-shot fold drawer: deterministic, disjoint support and query, N classes with K and Q each."""
import numpy as np
import pytest

from plugin.eval import draw_nway_kshot, remap_labels
from plugin.errors import ConfigError

TRAIN = np.repeat(np.arange(6), 12)  # 6 classes x 12 train samples
TEST = np.repeat(np.arange(6), 5)    # 6 classes x 5 test samples


def test_same_seed_same_folds_and_other_seed_other_folds():
    first = draw_nway_kshot(TRAIN, TEST, ways=3, shots=4, queries=2, folds=5, seed=7)
    assert first == draw_nway_kshot(TRAIN, TEST, ways=3, shots=4, queries=2, folds=5, seed=7)
    assert first != draw_nway_kshot(TRAIN, TEST, ways=3, shots=4, queries=2, folds=5, seed=8)
    # fold f does not depend on how many folds are drawn
    assert first[:2] == draw_nway_kshot(TRAIN, TEST, ways=3, shots=4, queries=2, folds=2, seed=7)


@pytest.mark.parametrize("query_labels", [TEST, None], ids=["train-test", "one-pool"])
def test_each_fold_has_n_classes_with_k_support_and_q_query(query_labels):
    query_pool = TRAIN if query_labels is None else TEST
    folds = draw_nway_kshot(TRAIN, query_labels, ways=3, shots=4, queries=5, folds=10, seed=0)
    assert len(folds) == 10
    for fold in folds:
        classes = fold["classes"]
        assert len(classes) == len(set(classes)) == 3
        support, query = np.array(fold["support"]), np.array(fold["query"])
        assert len(support) == len(set(support.tolist())) == 3 * 4
        assert len(query) == len(set(query.tolist())) == 3 * 5
        for c in classes:
            assert np.sum(TRAIN[support] == c) == 4 and np.sum(query_pool[query] == c) == 5
        if query_labels is None:
            assert not set(support.tolist()) & set(query.tolist())  # one pool: never a support cloud as query
        assert sorted(remap_labels(TRAIN[support], classes).tolist()) == sorted([0, 1, 2] * 4)
        assert remap_labels(query_pool[query], classes).tolist() == [i for i in range(3) for _ in range(5)]
    assert len({tuple(f["classes"]) for f in folds}) > 1  # the classes change across folds


@pytest.mark.parametrize("kwargs, words", [
    (dict(ways=7), "nshot.ways=7 exceeds the 6 classes"),
    (dict(shots=13), "fewer than nshot.shots=13"),
    (dict(queries=6), "fewer than nshot.queries=6"),
    (dict(ways=1), "nshot.ways is 1"),
    (dict(folds=0), "nshot.folds is 0"),
])
def test_bad_settings_are_one_sentence(kwargs, words):
    args = dict(ways=3, shots=4, queries=2, folds=2, seed=0, **{})
    args.update(kwargs)
    with pytest.raises(ConfigError, match=words):
        draw_nway_kshot(TRAIN, TEST, **args)


def test_one_pool_needs_k_plus_q_per_class():
    with pytest.raises(ConfigError, match="fewer than nshot.shots \\+ nshot.queries = 13"):
        draw_nway_kshot(TRAIN, None, ways=3, shots=10, queries=3, folds=1, seed=0)
