"""ScanObjectNN on tiny synthetic h5 files: variants, sampling, FPS and its caches, errors."""
import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from openpoints.transforms import build_transforms_from_cfg
from openpoints.utils import EasyConfig

from plugin.datasets import fps_sampling
from plugin.datasets.scanobjectnn import SCANOBJECTNN_CLASSES, ScanObjectNN
from plugin.errors import BadInputError, ConfigError, DataNotFoundError

from .synthetic_clouds import POINTS_PER_FILE, SCANOBJECTNN_FILES, numpy_fps, write_h5


@pytest.fixture(autouse=True)
def empty_fps_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without FPS results cached in memory by earlier tests."""
    monkeypatch.setattr(fps_sampling, "_MEMORY", {})


@pytest.fixture
def numpy_fps_backend(monkeypatch: pytest.MonkeyPatch) -> list:
    """Replace the pointnet2_ops FPS by the brute-force one; returns the list of calls (one per split)."""
    calls = []

    def fake(points: np.ndarray, num_points: int, batch_size: int = 64) -> np.ndarray:
        calls.append(len(points))
        return np.stack([cloud[numpy_fps(cloud, num_points)] for cloud in points])

    monkeypatch.setattr(fps_sampling, "fps_downsample", fake)
    return calls


def stored(root: Path, relative: str) -> np.ndarray:
    with h5py.File(root / relative, "r") as f:
        return f["data"][()]


@pytest.mark.parametrize("variant, train_file, test_file", [
    ("OBJ_BG", "main_split/training_objectdataset.h5", "main_split/test_objectdataset.h5"),
    ("OBJ_ONLY", "main_split_nobg/training_objectdataset.h5", "main_split_nobg/test_objectdataset.h5"),
    ("PB_T50_RS", "main_split/training_objectdataset_augmentedrot_scale75.h5",
     "main_split/test_objectdataset_augmentedrot_scale75.h5"),
])
def test_variants_pick_their_files(scanobjectnn_root: Path, variant: str, train_file: str, test_file: str) -> None:
    train = ScanObjectNN(scanobjectnn_root, "train", variant=variant, num_points=32)
    test = ScanObjectNN(scanobjectnn_root, "test", variant=variant, num_points=32, uniform_sample=False)
    val = ScanObjectNN(scanobjectnn_root, "val", variant=variant, num_points=32, uniform_sample=False)
    assert (train.h5_path, test.h5_path, val.h5_path) == (
        scanobjectnn_root / train_file, scanobjectnn_root / test_file, scanobjectnn_root / test_file)
    assert (len(train), len(test)) == (SCANOBJECTNN_FILES[train_file], SCANOBJECTNN_FILES[test_file])
    np.testing.assert_array_equal(test.points, stored(scanobjectnn_root, test_file)[:, :32])
    assert train.labels.dtype == np.int64 and train.labels.tolist() == list(range(len(train)))


def test_class_attributes() -> None:
    assert ScanObjectNN.classes == SCANOBJECTNN_CLASSES and len(SCANOBJECTNN_CLASSES) == 15
    assert ScanObjectNN.num_classes == 15 and ScanObjectNN.gravity_dim == 1
    assert SCANOBJECTNN_CLASSES[:3] == ["bag", "bin", "box"] and SCANOBJECTNN_CLASSES[-1] == "toilet"


def test_train_sample_is_a_random_subset(scanobjectnn_root: Path) -> None:
    data = ScanObjectNN(scanobjectnn_root, "train", num_points=32)
    assert data.points.shape == (6, POINTS_PER_FILE, 3)  # train keeps every stored point to draw from
    np.random.seed(0)
    first, second = data[2], data[2]
    cloud = {tuple(p) for p in data.points[2].tolist()}
    for sample in (first, second):
        assert sample["pos"].shape == (32, 3) and sample["y"] == 2
        assert {tuple(p) for p in sample["pos"].tolist()} <= cloud
    assert not np.array_equal(first["pos"], second["pos"])


def test_train_without_augmentation_reads_the_test_way(scanobjectnn_root: Path) -> None:
    data = ScanObjectNN(scanobjectnn_root, "train", num_points=32, augment=False, cache_fps=False)
    stored = ScanObjectNN(scanobjectnn_root, "train", num_points=POINTS_PER_FILE).points
    np.random.seed(0)
    first = data[2]["pos"]
    np.random.seed(1)
    assert np.array_equal(first, data[2]["pos"])                          # the seed does not matter
    np.testing.assert_array_equal(first, stored[2][numpy_fps(stored[2], 32)])  # the farthest points, as in test


def test_features_are_pos_and_heights(scanobjectnn_root: Path) -> None:
    data = ScanObjectNN(scanobjectnn_root, "test", num_points=32, uniform_sample=False)
    sample = data[0]
    height = sample["pos"][:, 1:2] - sample["pos"][:, 1].min()  # gravity axis y
    np.testing.assert_allclose(sample["heights"].numpy(), height)
    np.testing.assert_allclose(sample["x"].numpy(), np.concatenate([sample["pos"], height], axis=1))

    transform = build_transforms_from_cfg("val", EasyConfig(
        {"val": ["PointsToTensor", "PointCloudCenterAndNormalize"], "kwargs": {"gravity_dim": 1}}))
    data.transform = transform
    sample = data[0]
    assert sample["x"].shape == (32, 4)
    torch.testing.assert_close(sample["x"], torch.cat([sample["pos"], sample["heights"]], dim=1))


@pytest.mark.parametrize("num_points", [16, 40])
def test_fps_matches_bruteforce_from_index_zero(scanobjectnn_root: Path, num_points: int) -> None:
    data = ScanObjectNN(scanobjectnn_root, "test", num_points=num_points, cache_fps=False)
    clouds = stored(scanobjectnn_root, "main_split/test_objectdataset_augmentedrot_scale75.h5")
    expected = np.stack([cloud[numpy_fps(cloud, num_points)] for cloud in clouds])
    np.testing.assert_array_equal(data.points, expected)
    np.testing.assert_array_equal(data[3]["pos"], expected[3])


def test_fps_batches_all_clouds(monkeypatch: pytest.MonkeyPatch) -> None:
    clouds = np.random.default_rng(3).normal(size=(5, 50, 4)).astype(np.float32)
    out = fps_sampling.fps_downsample(clouds, 10, batch_size=2)
    for cloud, sampled in zip(clouds, out):
        np.testing.assert_array_equal(sampled, cloud[numpy_fps(cloud[:, :3], 10)])


def test_fps_cache_next_to_h5_then_reused(scanobjectnn_root: Path, numpy_fps_backend: list,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    first = ScanObjectNN(scanobjectnn_root, "test", num_points=16)
    again = ScanObjectNN(scanobjectnn_root, "val", num_points=16)  # same process: memory cache
    assert numpy_fps_backend == [7] and again.points is first.points
    cache = scanobjectnn_root / "main_split" / "test_objectdataset_augmentedrot_scale75_fps16.npy"
    np.testing.assert_array_equal(np.load(cache), first.points)

    monkeypatch.setattr(fps_sampling, "_MEMORY", {})  # a new process: disk cache
    np.testing.assert_array_equal(ScanObjectNN(scanobjectnn_root, "test", num_points=16).points, first.points)
    assert numpy_fps_backend == [7]
    ScanObjectNN(scanobjectnn_root, "test", num_points=8)  # another size is computed
    assert numpy_fps_backend == [7, 7]


def test_stale_or_disabled_fps_cache_is_not_used(scanobjectnn_root: Path, numpy_fps_backend: list,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ScanObjectNN(scanobjectnn_root, "test", num_points=16)
    monkeypatch.setattr(fps_sampling, "_MEMORY", {})
    h5 = scanobjectnn_root / "main_split" / "test_objectdataset_augmentedrot_scale75.h5"
    cache = h5.with_name(f"{h5.stem}_fps16.npy")
    os.utime(cache, ns=(h5.stat().st_mtime_ns - 10**9,) * 2)  # older than the data
    ScanObjectNN(scanobjectnn_root, "test", num_points=16)
    assert numpy_fps_backend == [7, 7]

    cache.unlink()
    monkeypatch.setattr(fps_sampling, "_MEMORY", {})
    ScanObjectNN(scanobjectnn_root, "test", num_points=16, cache_fps=False)
    assert not cache.exists()


def test_fps_cache_goes_to_user_cache_when_folder_is_read_only(scanobjectnn_root: Path, tmp_path: Path,
                                                               numpy_fps_backend: list,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    read_only = scanobjectnn_root / "main_split"
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != read_only and real_access(path, mode))
    data = ScanObjectNN(scanobjectnn_root, "test", num_points=16)
    assert not list(read_only.glob("*.npy"))
    cached = list((home / ".cache" / "openpoints-plugin").glob("test_objectdataset_augmentedrot_scale75_*_fps16.npy"))
    assert len(cached) == 1
    np.testing.assert_array_equal(np.load(cached[0]), data.points)

    monkeypatch.setattr(fps_sampling, "_MEMORY", {})
    ScanObjectNN(scanobjectnn_root, "test", num_points=16)
    assert numpy_fps_backend == [7]


def test_full_size_test_split_needs_no_fps(scanobjectnn_root: Path, numpy_fps_backend: list) -> None:
    data = ScanObjectNN(scanobjectnn_root, "test", num_points=POINTS_PER_FILE)
    assert data.points.shape == (7, POINTS_PER_FILE, 3) and numpy_fps_backend == []


def test_unknown_variant(scanobjectnn_root: Path) -> None:
    with pytest.raises(ConfigError, match=r"^Unknown ScanObjectNN variant 'hardest': set dataset\.common\.variant "
                                          r"to one of OBJ_BG, OBJ_ONLY, PB_T50_RS\.$"):
        ScanObjectNN(scanobjectnn_root, variant="hardest")


def test_missing_folder_and_file(scanobjectnn_root: Path) -> None:
    missing = scanobjectnn_root / "absent"
    expected = (f"ScanObjectNN data not found at '{missing}': set dataset.common.data_dir to the h5_files folder "
                f"(the one holding main_split and main_split_nobg).")
    with pytest.raises(DataNotFoundError, match=f"^{re.escape(expected)}$"):
        ScanObjectNN(missing)
    path = scanobjectnn_root / "main_split_nobg" / "test_objectdataset.h5"
    path.unlink()
    expected = (f"ScanObjectNN file '{path}' not found: set dataset.common.data_dir to an h5_files folder that "
                f"has it, or choose another dataset.common.variant.")
    with pytest.raises(DataNotFoundError, match=f"^{re.escape(expected)}$"):
        ScanObjectNN(scanobjectnn_root, "test", variant="OBJ_ONLY")


def test_nan_and_empty_clouds(tmp_path: Path) -> None:
    path = tmp_path / "main_split" / "training_objectdataset.h5"
    clouds = np.ones((4, 8, 3), dtype=np.float32)
    clouds[2, 0, 1] = np.nan
    write_h5(path, data=clouds, label=np.zeros(4, np.int64))
    expected = (f"Point cloud 2 of '{path}' has NaN or infinite values: replace it with a valid cloud or remove "
                f"it from the dataset.")
    with pytest.raises(BadInputError, match=f"^{re.escape(expected)}$"):
        ScanObjectNN(tmp_path, variant="OBJ_BG", num_points=8)
    write_h5(path, data=np.zeros((4, 0, 3), np.float32), label=np.zeros(4, np.int64))
    with pytest.raises(BadInputError, match=f"^'{re.escape(str(path))}' holds no points: "):
        ScanObjectNN(tmp_path, variant="OBJ_BG", num_points=8)


def test_malformed_files(tmp_path: Path) -> None:
    path = tmp_path / "main_split" / "training_objectdataset.h5"
    write_h5(path, data=np.ones((4, 8, 3), np.float32))
    with pytest.raises(BadInputError, match="has no 'label' dataset: replace it with the standard h5 file"):
        ScanObjectNN(tmp_path, variant="OBJ_BG", num_points=8)
    write_h5(path, data=np.ones((4, 8, 3), np.float32), label=np.full(4, 15))
    with pytest.raises(BadInputError, match="Label 15 of cloud 0 .* is outside 0..14"):
        ScanObjectNN(tmp_path, variant="OBJ_BG", num_points=8)
    path.write_bytes(b"not h5")
    with pytest.raises(BadInputError, match="is not a readable h5 file"):
        ScanObjectNN(tmp_path, variant="OBJ_BG", num_points=8)


def test_num_points_bounds(scanobjectnn_root: Path) -> None:
    with pytest.raises(ConfigError, match=f"set dataset.common.num_points to at most {POINTS_PER_FILE}"):
        ScanObjectNN(scanobjectnn_root, num_points=POINTS_PER_FILE + 1)
    with pytest.raises(ConfigError, match="set dataset.common.num_points to a positive integer"):
        ScanObjectNN(scanobjectnn_root, num_points=0)
