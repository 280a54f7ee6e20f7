"""Tiny synthetic datasets in the standard on-disk formats; :func:`write_pairs_folder` writes a rendered-views folder
for ``CrossModalPairs`` (also used by ``tests/engine/test_selftrain.py``)."""
import json
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import pytest
from PIL import Image

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


def view_green(view: int) -> int:
    """The constant green level of view ``view`` of every object of :func:`write_pairs_folder`: an image names its
    view."""
    return 60 * view + 20


def view_pixels(number: int, view: int, side: int = 20) -> np.ndarray:
    """(side, side, 3) uint8: red names the object (``30 * number`` mod 256), green the view, blue a horizontal ramp
    (real content)."""
    pixels = np.empty((side, side, 3), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1] = (30 * number) % 256, view_green(view)
    pixels[..., 2] = np.linspace(0, 255, side, dtype=np.uint8)[None, :]
    return pixels


def write_pairs_folder(root: Path, clouds: Dict[str, List[np.ndarray]], classes: Sequence[str] = ("a", "b"),
                       views: int = 3, side: int = 20) -> Path:
    """A rendered-views folder without cameras (what ``CrossModalPairs`` reads).

    Args:
        root: the folder to write (created).
        clouds: a split (``train``, ``test``) to its objects' (N, 3) points; object ``k`` of a split is
            ``<split>_<k>`` with label ``k % len(classes)``.
        classes: the category names of ``meta.json``, in label order.
        views: the ``view_XX.png`` files per object (:func:`view_pixels`).
        side: the stored PNG side.
    """
    root.mkdir(parents=True, exist_ok=True)
    number = 0
    for split, objects in clouds.items():
        lines = []
        for k, cloud in enumerate(objects):
            folder = root / f"{split}_{k}"
            folder.mkdir()
            np.save(folder / "points.npy", cloud.astype(np.float32))
            for v in range(views):
                Image.fromarray(view_pixels(number, v, side)).save(folder / f"view_{v:02d}.png")
            lines.append(f"{folder.name} {k % len(classes)}\n")
            number += 1
        (root / f"{split}.txt").write_text("".join(lines))
    (root / "meta.json").write_text(json.dumps({"classes": list(classes), "views": views}))
    return root
