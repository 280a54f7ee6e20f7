"""Pooling of per-point features and the fingerprinted feature cache."""
import numpy as np
import pytest
import torch

from plugin.errors import ConfigError
from plugin.eval import load_features, parse_pooling, pool_features, save_features
from plugin.io import file_digest, fingerprint


@pytest.mark.parametrize("spec, names", [
    ("max", ("max",)), ("max,mean", ("max", "mean")), (" max , mean ", ("max", "mean")), (["mean"], ("mean",)),
    ("global", ("global",)), ("global,max", ("global", "max")),
])
def test_parse_pooling(spec, names):
    assert parse_pooling(spec, "svm.pooling") == names


@pytest.mark.parametrize("spec", ["avg", "max,", "", None, ["max", "sum"]])
def test_unknown_pooling_names_the_callers_key(spec):
    with pytest.raises(ConfigError, match="in svm.pooling: use global, max"):
        parse_pooling(spec, "svm.pooling")
    with pytest.raises(ConfigError, match=r"in fewshot\.pooling: use global, max"):
        parse_pooling(spec, "fewshot.pooling")


def test_pool_features_concatenates_in_order():
    local = torch.arange(24.0).view(2, 3, 4)                # (B, C, L)
    global_feat = -torch.arange(10.0).view(2, 5)            # (B, C')
    pooled = pool_features(local, global_feat, ("max", "mean"))
    assert pooled.shape == (2, 6)
    assert torch.equal(pooled[:, :3], local[..., -1]) and torch.equal(pooled[:, 3:], local.mean(-1))
    both = pool_features(local, global_feat, ("global", "max"))
    assert both.shape == (2, 8) and torch.equal(both[:, :5], global_feat) and torch.equal(both[:, 5:], local[..., -1])


def test_cache_round_trip_and_mismatch(tmp_path):
    path = str(tmp_path / "features_train.npz")
    features, labels = np.random.rand(4, 3).astype(np.float32), np.arange(4)
    key = fingerprint({"pooling": ["max"], "split": "train"})
    assert load_features(path, key) is None                 # absent
    save_features(path, features, labels, key)
    got = load_features(path, key)
    assert np.array_equal(got[0], features) and np.array_equal(got[1], labels)
    assert load_features(path, fingerprint({"pooling": ["mean"], "split": "train"})) is None
    (tmp_path / "features_train.npz").write_bytes(b"not a zip")
    assert load_features(path, key) is None                 # corrupt: extract again
    assert [p.name for p in tmp_path.iterdir()] == ["features_train.npz"]  # atomic: no temp file left


def test_fingerprint_is_order_independent_and_file_digest_follows_content(tmp_path):
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    (tmp_path / "w").write_bytes(b"one")
    first = file_digest(str(tmp_path / "w"))
    (tmp_path / "w").write_bytes(b"two")
    assert file_digest(str(tmp_path / "w")) != first
