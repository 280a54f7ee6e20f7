"""Writers and constants for the tiny synthetic datasets of these tests."""
from pathlib import Path

import h5py
import numpy as np

POINTS_PER_FILE = 64
# Synthetic ModelNet40 txt layout: class -> (train numbers, test numbers).
MODELNET_SPLITS = {"airplane": ([1, 2, 3], [4, 5]), "bathtub": ([1, 2], [3]), "night_stand": ([1], [2])}
# ScanObjectNN h5 files under h5_files/ -> number of clouds (distinct, to tell the files apart).
SCANOBJECTNN_FILES = {
    "main_split/training_objectdataset.h5": 5,
    "main_split/test_objectdataset.h5": 3,
    "main_split_nobg/training_objectdataset.h5": 4,
    "main_split_nobg/test_objectdataset.h5": 2,
    "main_split/training_objectdataset_augmentedrot_scale75.h5": 6,
    "main_split/test_objectdataset_augmentedrot_scale75.h5": 7,
}


def sphere(n: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` points on a sphere of ``radius`` centred at the origin, (n, 3) float32."""
    directions = rng.normal(size=(n, 3))
    return (radius * directions / np.linalg.norm(directions, axis=1, keepdims=True)).astype(np.float32)


def random_clouds(count: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` clouds of ``n`` points with norms in [0.5, 1] (clear of FPS's zero-norm special case)."""
    directions = rng.normal(size=(count, n, 3))
    directions /= np.linalg.norm(directions, axis=2, keepdims=True)
    return (directions * rng.uniform(0.5, 1.0, size=(count, n, 1))).astype(np.float32)


def write_shape(path: Path, points: np.ndarray, normals: np.ndarray) -> None:
    """Write one ``x,y,z,nx,ny,nz`` file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, np.concatenate([points, normals], axis=1), delimiter=",", fmt="%.6f")


def write_h5(path: Path, **arrays: np.ndarray) -> Path:
    """Write ``arrays`` as datasets of a new h5 file at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


def numpy_fps(xyz: np.ndarray, k: int) -> np.ndarray:
    """Brute-force farthest point sampling of ``xyz`` (N, 3) from index 0: the ``k`` chosen indices in order."""
    chosen = [0]
    nearest = np.full(len(xyz), np.inf, dtype=np.float32)
    for _ in range(k - 1):
        nearest = np.minimum(nearest, ((xyz - xyz[chosen[-1]]) ** 2).sum(axis=1))
        chosen.append(int(nearest.argmax()))
    return np.array(chosen)
