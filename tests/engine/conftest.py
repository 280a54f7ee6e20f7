"""A tiny, linearly separable ModelNet-layout dataset and a runner invocation helper."""
from pathlib import Path

import numpy as np
import pytest

from ..conftest import REPO, load_tool
CLASSES = ["airplane", "bathtub", "bed"]


def _shape(label: int, rng: np.random.Generator, n: int) -> np.ndarray:
    """Class 0: a sphere, 1: a cube surface, 2: a thin cylinder (all about unit size); xyz plus normals."""
    if label == 0:
        p = rng.normal(size=(n, 3))
        p /= np.linalg.norm(p, axis=1, keepdims=True)
    elif label == 1:
        p = rng.uniform(-0.8, 0.8, (n, 3))
        face = rng.integers(0, 3, n)
        p[np.arange(n), face] = np.sign(rng.uniform(-1, 1, n)) * 0.8
    else:
        angle = rng.uniform(0, 2 * np.pi, n)
        p = np.c_[0.2 * np.cos(angle), 0.2 * np.sin(angle), rng.uniform(-1, 1, n)]
    p = p + 0.01 * rng.normal(size=p.shape)
    normals = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-6)
    return np.c_[p, normals]


@pytest.fixture(scope="session")
def tiny_modelnet(tmp_path_factory) -> Path:
    """``modelnet40_normal_resampled`` layout: 3 classes x (8 train + 4 test) shapes of 256 points."""
    root = tmp_path_factory.mktemp("data") / "modelnet40_normal_resampled"
    rng = np.random.default_rng(0)
    (root).mkdir()
    (root / "modelnet40_shape_names.txt").write_text("\n".join(CLASSES) + "\n")
    splits = {"train": [], "test": []}
    for label, name in enumerate(CLASSES):
        (root / name).mkdir()
        for i in range(12):
            shape_id = f"{name}_{i + 1:04d}"
            np.savetxt(root / name / f"{shape_id}.txt", _shape(label, rng, 256), fmt="%.6f", delimiter=",")
            splits["train" if i < 8 else "test"].append(shape_id)
    for split, ids in splits.items():
        (root / f"modelnet40_{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def tiny_overrides(data_dir: Path, root_dir: Path, epochs: int = 2):
    """Overrides that shrink cfgs/modelnet40/dgcnn.yaml to a seconds-long run on ``tiny_modelnet``."""
    return [f"dataset.common.data_dir={data_dir}", f"root_dir={root_dir}", f"epochs={epochs}",
            "dataset.common.num_points=128", "num_points=128", "num_classes=3", "batch_size=6",
            "val_batch_size=12", "model.encoder_args.channels=8", "model.encoder_args.k=8",
            "model.encoder_args.embed_dim=32", "model.cls_args.num_classes=3", "model.cls_args.mlps=[16]",
            "lr=0.01"]


def _load_main():
    return load_tool("main").main


@pytest.fixture(scope="session")
def main():
    """``tools/main.py``'s ``main(argv) -> exit status``."""
    return _load_main()


DGCNN_CFG = str(REPO / "cfgs" / "modelnet40" / "dgcnn.yaml")
