"""ModelNet40NormalResampled and ModelNet40Ply2048 on tiny synthetic datasets in the standard formats."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from openpoints.transforms import build_transforms_from_cfg
from openpoints.utils import EasyConfig

from plugin.datasets import modelnet40
from plugin.datasets.modelnet40 import MODELNET40_CLASSES, ModelNet40NormalResampled, ModelNet40Ply2048
from plugin.errors import BadInputError, ConfigError, DataNotFoundError

from .synthetic_clouds import MODELNET_SPLITS, POINTS_PER_FILE, write_h5

N_TRAIN = sum(len(lists[0]) for lists in MODELNET_SPLITS.values())
N_TEST = sum(len(lists[1]) for lists in MODELNET_SPLITS.values())


def transform(*names: str, **kwargs) -> object:
    """An OpenPoints train transform from transform names and shared kwargs."""
    return build_transforms_from_cfg("train", EasyConfig({"train": list(names), "kwargs": kwargs}))


def unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=1, keepdim=True)


# ---- ModelNet40NormalResampled ---------------------------------------------------------------------------

def test_lengths_labels_and_classes(modelnet_txt_dir: Path) -> None:
    train = ModelNet40NormalResampled(modelnet_txt_dir, "train", num_points=32)
    test = ModelNet40NormalResampled(modelnet_txt_dir, "test", num_points=32)
    assert (len(train), len(test)) == (N_TRAIN, N_TEST)
    assert train.classes == MODELNET40_CLASSES and train.num_classes == 40
    night_stand = MODELNET40_CLASSES.index("night_stand")
    assert train.labels.tolist() == [0, 0, 0, 1, 1, night_stand]
    assert test.labels.tolist() == [0, 0, 1, night_stand]
    assert train.labels.dtype == np.int64


def test_sample_keeps_first_points_in_file_order_on_test(modelnet_txt_dir: Path) -> None:
    data = ModelNet40NormalResampled(modelnet_txt_dir, "test", num_points=32)
    sample = data[2]
    rows = np.loadtxt(modelnet_txt_dir / "bathtub" / "bathtub_0003.txt", delimiter=",", dtype=np.float32)
    np.testing.assert_allclose(sample["pos"], rows[:32, :3])
    np.testing.assert_allclose(sample["normals"], rows[:32, 3:])
    assert sample["pos"].shape == (32, 3) and sample["pos"].dtype == np.float32
    assert sample["y"] == 1 and sample["y"].dtype == np.int64
    assert torch.equal(sample["x"], torch.from_numpy(rows[:32, :3]))  # pos only without use_normals


def test_val_reads_the_test_list(modelnet_txt_dir: Path) -> None:
    val = ModelNet40NormalResampled(modelnet_txt_dir, "val", num_points=16)
    test = ModelNet40NormalResampled(modelnet_txt_dir, "test", num_points=16)
    assert val.split == "test"
    np.testing.assert_array_equal(val.labels, test.labels)
    np.testing.assert_array_equal(val.points, test.points)


def test_parent_folder_works_like_upstream(modelnet_txt_dir: Path) -> None:
    assert len(ModelNet40NormalResampled(modelnet_txt_dir.parent, "train", num_points=8)) == N_TRAIN


def test_train_shuffle_keeps_normals_aligned(modelnet_txt_dir: Path) -> None:
    data = ModelNet40NormalResampled(modelnet_txt_dir, "train", num_points=48, use_normals=True)
    np.random.seed(0)
    for idx in range(len(data)):
        sample = data[idx]
        assert not np.array_equal(sample["pos"], data.points[idx])  # shuffled ...
        np.testing.assert_allclose(np.sort(sample["pos"], axis=0), np.sort(data.points[idx], axis=0))  # ... same set
        radius = idx + 1.0  # see the fixture
        np.testing.assert_allclose(sample["normals"], sample["pos"] / radius, atol=1e-5)
        np.testing.assert_allclose(sample["x"].numpy(), np.concatenate([sample["pos"], sample["normals"]], 1))


def test_rotation_rotates_normals_with_points(modelnet_txt_dir: Path) -> None:
    data = ModelNet40NormalResampled(modelnet_txt_dir, "train", num_points=48, use_normals=True,
                                     transform=transform("PointsToTensor", "PointCloudRotation", angle=[1, 1, 1]))
    np.random.seed(1)
    sample = data[4]
    assert isinstance(sample["pos"], torch.Tensor) and sample["x"].shape == (48, 6)
    stored = torch.from_numpy(data.points[4])
    assert not torch.allclose(torch.sort(sample["pos"], 0).values, torch.sort(stored, 0).values)  # rotated
    torch.testing.assert_close(sample["normals"], unit(sample["pos"]), atol=1e-5, rtol=0)
    torch.testing.assert_close(sample["x"], torch.cat([sample["pos"], sample["normals"]], 1))


def test_heights_from_the_transform_are_appended(modelnet_txt_dir: Path) -> None:
    data = ModelNet40NormalResampled(
        modelnet_txt_dir, "test", num_points=32, use_normals=True,
        transform=transform("PointsToTensor", "PointCloudScaling", "PointCloudCenterAndNormalize", gravity_dim=2))
    sample = data[0]
    assert sample["x"].shape == (32, 7)
    torch.testing.assert_close(sample["x"][:, 6:], sample["heights"])
    assert sample["heights"].min() == 0


def test_modelnet10_uses_its_own_lists(modelnet_txt_dir: Path) -> None:
    (modelnet_txt_dir / "modelnet10_shape_names.txt").write_text("bathtub\nnight_stand\n")
    (modelnet_txt_dir / "modelnet10_train.txt").write_text("night_stand_0001\nbathtub_0001\n")
    data = ModelNet40NormalResampled(modelnet_txt_dir, "train", num_points=8, num_classes=10)
    assert data.classes == ["bathtub", "night_stand"] and data.num_classes == 2
    assert data.labels.tolist() == [1, 0]


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    expected = (f"ModelNet40 data not found at '{missing}': set dataset.common.data_dir to the "
                f"modelnet40_normal_resampled folder (the one holding modelnet40_shape_names.txt).")
    with pytest.raises(DataNotFoundError, match=f"^{re.escape(expected)}$"):
        ModelNet40NormalResampled(missing)


def test_missing_split_list(modelnet_txt_dir: Path) -> None:
    (modelnet_txt_dir / "modelnet40_test.txt").unlink()
    with pytest.raises(DataNotFoundError, match=r"split list '.*modelnet40_test\.txt' not found: set "
                                                r"dataset\.common\.data_dir"):
        ModelNet40NormalResampled(modelnet_txt_dir, "val")


def test_listed_file_missing(modelnet_txt_dir: Path) -> None:
    path = modelnet_txt_dir / "airplane" / "airplane_0002.txt"
    path.unlink()
    expected = (f"ModelNet40 shape file '{path}' listed in modelnet40_train.txt not found: restore it or remove "
                f"'airplane_0002' from modelnet40_train.txt.")
    with pytest.raises(DataNotFoundError, match=f"^{re.escape(expected)}$"):
        ModelNet40NormalResampled(modelnet_txt_dir, "train", num_points=16)


def test_nan_file(modelnet_txt_dir: Path) -> None:
    path = modelnet_txt_dir / "bathtub" / "bathtub_0001.txt"
    lines = path.read_text().splitlines()
    lines[5] = "nan,0,0,1,0,0"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInputError, match=f"^Point cloud '{re.escape(str(path))}' has NaN or infinite values: "):
        ModelNet40NormalResampled(modelnet_txt_dir, "train", num_points=16)


def test_empty_file(modelnet_txt_dir: Path) -> None:
    path = modelnet_txt_dir / "night_stand" / "night_stand_0002.txt"
    path.write_text("")
    expected = (f"Point cloud '{path}' is empty: replace it with a valid cloud or remove it from the dataset.")
    with pytest.raises(BadInputError, match=f"^{re.escape(expected)}$"):
        ModelNet40NormalResampled(modelnet_txt_dir, "test", num_points=16)


def test_unparsable_and_short_files(modelnet_txt_dir: Path) -> None:
    path = modelnet_txt_dir / "airplane" / "airplane_0001.txt"
    path.write_text("x,y,z\n1,2,3\n")
    with pytest.raises(BadInputError, match="is not comma-separated numbers"):
        ModelNet40NormalResampled(modelnet_txt_dir, "train", num_points=16)
    path.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(BadInputError, match="has 3 columns: replace it with x,y,z,nx,ny,nz lines"):
        ModelNet40NormalResampled(modelnet_txt_dir, "train", num_points=16)


def test_num_points_bounds(modelnet_txt_dir: Path) -> None:
    with pytest.raises(ConfigError, match=f"set dataset.common.num_points to at most {POINTS_PER_FILE}"):
        ModelNet40NormalResampled(modelnet_txt_dir, "train", num_points=POINTS_PER_FILE + 1)
    with pytest.raises(ConfigError, match="set dataset.common.num_points to a positive integer"):
        ModelNet40NormalResampled(modelnet_txt_dir, "train", num_points=-1)


def test_bad_split_and_class_count(modelnet_txt_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"^Unknown ModelNet40 split 'valid': set dataset\.<train\|val\|test>\."
                                          r"split to train, val or test\.$"):
        ModelNet40NormalResampled(modelnet_txt_dir, "valid")
    with pytest.raises(ConfigError, match="set dataset.common.num_classes to 40 or 10"):
        ModelNet40NormalResampled(modelnet_txt_dir, num_classes=15)


def test_unknown_class_in_list(modelnet_txt_dir: Path) -> None:
    (modelnet_txt_dir / "modelnet40_train.txt").write_text("spaceship_0001\n")
    with pytest.raises(BadInputError, match="Shape 'spaceship_0001' .* belongs to no class"):
        ModelNet40NormalResampled(modelnet_txt_dir, "train", num_points=16)


# ---- ModelNet40Ply2048 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("inside", [False, True], ids=["parent", "folder"])
def test_ply2048_reads_folder_or_parent(ply2048_parent: Path, inside: bool) -> None:
    data_dir = ply2048_parent / "modelnet40_ply_hdf5_2048" if inside else ply2048_parent
    train = ModelNet40Ply2048(data_dir, "train", num_points=32)
    val = ModelNet40Ply2048(data_dir, "val", num_points=32)
    assert (len(train), len(val)) == (5, 2)
    assert train.labels.tolist() == [0, 1, 2, 3, 4] and val.labels.tolist() == [0, 1]
    assert train.points.shape == (5, 32, 3) and train.labels.dtype == np.int64
    assert train.classes == MODELNET40_CLASSES and train.num_classes == 40
    sample = val[1]
    assert sample["pos"].shape == (32, 3) and sample["x"].shape == (32, 3) and sample["y"] == 1


def test_ply2048_train_shuffle_keeps_normals_aligned(ply2048_parent: Path) -> None:
    data = ModelNet40Ply2048(ply2048_parent, "train", num_points=32, use_normals=True)
    np.random.seed(2)
    sample = data[3]
    assert not np.array_equal(sample["pos"], data.points[3])
    np.testing.assert_allclose(sample["normals"], sample["pos"] / np.linalg.norm(sample["pos"], axis=1, keepdims=True),
                               atol=1e-6)
    assert sample["x"].shape == (32, 6)


def test_ply2048_never_downloads(tmp_path: Path) -> None:
    expected = (f"ModelNet40 h5 data not found at '{tmp_path / 'data'}': set dataset.common.data_dir to the "
                f"modelnet40_ply_hdf5_2048 folder (the one holding ply_data_train0.h5) or its parent.")
    with pytest.raises(DataNotFoundError, match=f"^{re.escape(expected)}$"):
        ModelNet40Ply2048(tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_ply2048_missing_split_files(ply2048_parent: Path) -> None:
    (ply2048_parent / "modelnet40_ply_hdf5_2048" / "ply_data_test0.h5").unlink()
    with pytest.raises(DataNotFoundError,
                       match=r"^No ply_data_test\*\.h5 files in '.*': set dataset\.common\.data_dir"):
        ModelNet40Ply2048(ply2048_parent, "test")


def test_ply2048_bad_clouds(tmp_path: Path) -> None:
    clouds = np.ones((3, 8, 3), dtype=np.float32)
    clouds[1, 2, 0] = np.inf
    path = write_h5(tmp_path / "ply_data_train0.h5", data=clouds, label=np.zeros((3, 1), np.int64))
    with pytest.raises(BadInputError, match=f"^Point cloud 1 of '{re.escape(str(path))}' has NaN or infinite"):
        ModelNet40Ply2048(tmp_path, num_points=8)
    write_h5(path, data=np.zeros((3, 0, 3), np.float32), label=np.zeros((3, 1), np.int64))
    with pytest.raises(BadInputError, match=f"^'{re.escape(str(path))}' holds no points"):
        ModelNet40Ply2048(tmp_path, num_points=8)


def test_ply2048_use_normals_without_normals(tmp_path: Path) -> None:
    write_h5(tmp_path / "ply_data_train0.h5", data=np.ones((2, 8, 3), np.float32), label=np.zeros((2, 1), np.int64))
    with pytest.raises(BadInputError, match="has no 'normal' dataset: set dataset.common.use_normals to False"):
        ModelNet40Ply2048(tmp_path, num_points=8, use_normals=True)
    assert "normals" not in ModelNet40Ply2048(tmp_path, num_points=8)[0]


def test_modelnet_features_order() -> None:
    data = {"pos": torch.zeros(4, 3), "normals": torch.ones(4, 3), "heights": torch.full((4, 1), 2.0)}
    assert modelnet40.modelnet_features(data, use_normals=True)[0].tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert modelnet40.modelnet_features(data, use_normals=False)[0].tolist() == [0, 0, 0, 2]


def test_load_line_reaches_the_run_log(modelnet_txt_dir: Path, tmp_path: Path) -> None:
    # The run folder sends the "plugin" logger to log.txt; dataset lines must go there, not to the root logger.
    from plugin.engine.run_folder import LOGGER, RunFolder

    folder = RunFolder(str(tmp_path / "run"))  # attaches log.txt
    try:
        ModelNet40NormalResampled(modelnet_txt_dir, "test", num_points=32)
        for handler in LOGGER.handlers:
            handler.flush()
        assert f"Loaded ModelNet40 test: {N_TEST} shapes of 32 points" in Path(folder.file("log.txt")).read_text()
    finally:
        for handler in list(LOGGER.handlers):
            LOGGER.removeHandler(handler)
            handler.close()
