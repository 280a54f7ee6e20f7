"""ModelNet40NormalResampled on the real 3-class subset in ../shared/data (skipped when absent).

The ``modelnet_dir`` fixture (tests/conftest.py) skips with the reason when the data is not beside the repo.
"""
from pathlib import Path

import numpy as np
import pytest

from plugin.datasets.modelnet40 import MODELNET40_CLASSES, ModelNet40NormalResampled
from plugin.errors import ConfigError


@pytest.fixture(scope="module")
def real_train(modelnet_dir: Path) -> ModelNet40NormalResampled:
    return ModelNet40NormalResampled(modelnet_dir, "train", num_points=2048, use_normals=True)


def test_split_sizes_and_labels(modelnet_dir: Path, real_train: ModelNet40NormalResampled) -> None:
    test = ModelNet40NormalResampled(modelnet_dir, "test", num_points=1024)
    assert (len(real_train), len(test)) == (905, 170)
    assert real_train.classes == MODELNET40_CLASSES and real_train.num_classes == 40
    assert [real_train.classes[i] for i in (0, 1, 3)] == ["airplane", "bathtub", "bench"]
    assert set(real_train.labels.tolist()) == set(test.labels.tolist()) == {0, 1, 3}
    assert test.points.shape == (170, 1024, 3) and test.normals.shape == (170, 1024, 3)


def test_all_2048_points_are_available(modelnet_dir: Path, real_train: ModelNet40NormalResampled) -> None:
    assert real_train.points.shape == (905, 2048, 3)
    assert np.isfinite(real_train.points).all()
    unit = np.abs(np.linalg.norm(real_train.normals, axis=2) - 1.0) < 0.02
    assert unit.mean() > 0.999  # a few real files hold (1, 1, 1) for degenerate faces
    with pytest.raises(ConfigError, match="set dataset.common.num_points to at most 2048"):
        ModelNet40NormalResampled(modelnet_dir, "test", num_points=2049)


def test_train_samples_keep_each_normal_with_its_point(modelnet_dir: Path,
                                                      real_train: ModelNet40NormalResampled) -> None:
    shape_id = (modelnet_dir / "modelnet40_train.txt").read_text().split()[0]
    rows = np.loadtxt(modelnet_dir / shape_id.rsplit("_", 1)[0] / f"{shape_id}.txt", delimiter=",",
                      dtype=np.float32)
    normal_of = {tuple(row[:3]): tuple(row[3:]) for row in rows}
    np.random.seed(0)
    sample = real_train[0]
    assert not np.array_equal(sample["pos"], rows[:, :3])
    assert [normal_of[tuple(p)] for p in sample["pos"]] == [tuple(n) for n in sample["normals"]]
    np.testing.assert_array_equal(sample["x"].numpy(), np.concatenate([sample["pos"], sample["normals"]], axis=1))
