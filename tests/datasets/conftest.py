"""Tiny synthetic datasets in the standard on-disk formats."""
from pathlib import Path

import numpy as np
import pytest

import plugin  # noqa: F401  (installs the OpenPoints patches and registers the datasets)
from .synthetic_clouds import (MODELNET_SPLITS, POINTS_PER_FILE, SCANOBJECTNN_FILES,
                               random_clouds, sphere, write_h5, write_shape)


@pytest.fixture
def modelnet_txt_dir(tmp_path: Path) -> Path:
    """A tiny ``modelnet40_normal_resampled`` folder: spheres whose normals are their unit positions.

    Shape ``k`` of a split list (0-based, in list order) has radius ``k + 1``, so samples can be traced
    back to their file.
    """
    from plugin.datasets.modelnet40 import MODELNET40_CLASSES

    rng = np.random.default_rng(0)
    root = tmp_path / "modelnet40_normal_resampled"
    root.mkdir()
    (root / "modelnet40_shape_names.txt").write_text("\n".join(MODELNET40_CLASSES) + "\n")
    for split, column in (("train", 0), ("test", 1)):
        ids = [f"{name}_{number:04d}" for name, lists in MODELNET_SPLITS.items() for number in lists[column]]
        (root / f"modelnet40_{split}.txt").write_text("\n".join(ids) + "\n")
        for k, shape_id in enumerate(ids):
            points = sphere(POINTS_PER_FILE, k + 1.0, rng)
            write_shape(root / shape_id.rsplit("_", 1)[0] / f"{shape_id}.txt", points, points / (k + 1.0))
    return root


@pytest.fixture
def ply2048_parent(tmp_path: Path) -> Path:
    """Parent of a tiny ``modelnet40_ply_hdf5_2048`` folder: train files of 3 and 2 clouds, a test file of 2.

    Labels run 0, 1, ... through a split in file order; normals are the unit positions.
    """
    rng = np.random.default_rng(1)
    for name, labels in (("ply_data_train0.h5", [0, 1, 2]), ("ply_data_train1.h5", [3, 4]),
                         ("ply_data_test0.h5", [0, 1])):
        points = random_clouds(len(labels), POINTS_PER_FILE, rng)
        write_h5(tmp_path / "modelnet40_ply_hdf5_2048" / name, data=points,
                 label=np.array(labels, dtype=np.uint8).reshape(-1, 1),
                 normal=points / np.linalg.norm(points, axis=2, keepdims=True))
    return tmp_path


@pytest.fixture
def scanobjectnn_root(tmp_path: Path) -> Path:
    """A tiny ``h5_files`` folder with both files of every variant; the cloud counts tell the files apart."""
    rng = np.random.default_rng(2)
    root = tmp_path / "h5_files"
    for relative, count in SCANOBJECTNN_FILES.items():
        write_h5(root / relative, data=random_clouds(count, POINTS_PER_FILE, rng),
                 label=(np.arange(count) % 15).astype(np.int64))
    return root
