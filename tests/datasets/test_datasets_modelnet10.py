"""ModelNet10 as the subset of the ModelNet40 lists: its classes, labels re-indexed 0..9, and the real data."""
from pathlib import Path

import pytest

from plugin.datasets.modelnet40 import MODELNET10_CLASSES, ModelNet40NormalResampled
from plugin.errors import BadInputError, ConfigError


def test_subset_filters_the_modelnet40_lists(modelnet_txt_dir: Path) -> None:
    # the synthetic lists hold airplane (not in ModelNet10), bathtub and night_stand
    test = ModelNet40NormalResampled(modelnet_txt_dir, "test", num_points=8, subset="modelnet10")
    assert test.classes == MODELNET10_CLASSES and test.num_classes == 10
    assert test.shape_ids == ["bathtub_0003", "night_stand_0002"]
    assert test.labels.tolist() == [MODELNET10_CLASSES.index("bathtub"), MODELNET10_CLASSES.index("night_stand")]
    assert test.labels.tolist() == [0, 6]
    # shape k of the 40-class list is a sphere of radius k + 1: bathtub_0003 is the 3rd shape of that list
    assert abs(float((test[0]["pos"] ** 2).sum(1).mean()) ** 0.5 - 3.0) < 1e-3


def test_num_classes_10_without_own_lists_filters_too(modelnet_txt_dir: Path) -> None:
    train = ModelNet40NormalResampled(modelnet_txt_dir, "train", num_points=8, num_classes=10)
    assert train.shape_ids == ["bathtub_0001", "bathtub_0002", "night_stand_0001"]
    assert train.labels.tolist() == [0, 0, 6]


def test_subset_errors_name_the_key(modelnet_txt_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dataset.common.subset to modelnet40 or modelnet10"):
        ModelNet40NormalResampled(modelnet_txt_dir, subset="modelnet12")
    with pytest.raises(ConfigError, match="remove dataset.common.num_classes"):
        ModelNet40NormalResampled(modelnet_txt_dir, subset="modelnet10", num_classes=40)
    (modelnet_txt_dir / "modelnet40_test.txt").write_text("airplane_0004\n")
    with pytest.raises(BadInputError, match="no shape of a ModelNet10 class"):
        ModelNet40NormalResampled(modelnet_txt_dir, "test", num_points=8, subset="modelnet10")


def test_real_data_keeps_only_bathtubs(modelnet_dir: Path) -> None:
    test = ModelNet40NormalResampled(modelnet_dir, "test", num_points=16, subset="modelnet10")
    assert len(test) == 50 and all(shape_id.startswith("bathtub_") for shape_id in test.shape_ids)
    assert set(test.labels.tolist()) == {MODELNET10_CLASSES.index("bathtub")}
    assert test.classes[int(test.labels[0])] == "bathtub"
