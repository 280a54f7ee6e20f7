"""Our classes replace the upstream ``ScanObjectNNHardest`` and ``ModelNet40Ply2048`` and build from a config on CPU."""
import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from openpoints.dataset import build_dataloader_from_cfg
from openpoints.dataset.build import DATASETS
from easydict import EasyDict

from plugin.datasets import modelnet40, scanobjectnn
from plugin.errors import ConfigError, DataNotFoundError

from .synthetic_clouds import POINTS_PER_FILE

TRANSFORMS = {
    "train": ["PointsToTensor", "PointCloudScaling", "PointCloudCenterAndNormalize"],
    "val": ["PointsToTensor", "PointCloudCenterAndNormalize"],
    "kwargs": {"gravity_dim": 1, "normalize": False},
}


def loader(common: dict, split: str, split_cfg: dict, batch_size: int = 2) -> torch.utils.data.DataLoader:
    cfg = EasyDict({"common": common, split: split_cfg})
    return build_dataloader_from_cfg(batch_size, cfg, EasyDict({"num_workers": 0}), EasyDict(TRANSFORMS),
                                     split=split, distributed=False)


def test_upstream_names_are_ours() -> None:
    assert DATASETS.get("ScanObjectNNHardest") is scanobjectnn.ScanObjectNNHardest
    assert DATASETS.get("ModelNet40Ply2048") is modelnet40.ModelNet40Ply2048
    assert DATASETS.get("ScanObjectNN") is scanobjectnn.ScanObjectNN
    assert DATASETS.get("ModelNet40NormalResampled") is modelnet40.ModelNet40NormalResampled
    assert issubclass(scanobjectnn.ScanObjectNNHardest, scanobjectnn.ScanObjectNN)


def test_scanobjectnn_hardest_builds_from_upstream_config(scanobjectnn_root: Path) -> None:
    common = {"NAME": "ScanObjectNNHardest", "data_dir": str(scanobjectnn_root / "main_split")}
    train = loader(common, "train", {"split": "train", "num_points": 32})
    assert isinstance(train.dataset, scanobjectnn.ScanObjectNNHardest)
    assert train.dataset.h5_path.name == "training_objectdataset_augmentedrot_scale75.h5"
    batch = next(iter(train))
    assert batch["pos"].shape == (2, 32, 3) and batch["x"].shape == (2, 32, 4) and batch["y"].shape == (2,)
    torch.testing.assert_close(batch["x"][..., 3:], batch["heights"])

    test = loader(common, "test", {"split": "test", "num_points": 16, "uniform_sample": False})
    assert len(test.dataset) == 7 and next(iter(test))["x"].shape == (2, 16, 4)


def test_scanobjectnn_hardest_defaults_and_errors(scanobjectnn_root: Path) -> None:
    signature = inspect.signature(scanobjectnn.ScanObjectNNHardest)
    assert list(signature.parameters) == ["data_dir", "split", "num_points", "uniform_sample", "transform", "kwargs"]
    assert signature.parameters["num_points"].default == 2048  # as upstream; these files hold fewer points
    with pytest.raises(ConfigError, match=f"set dataset.common.num_points to at most {POINTS_PER_FILE}"):
        scanobjectnn.ScanObjectNNHardest(scanobjectnn_root / "main_split", "train")
    missing = scanobjectnn_root / "main_split_nobg" / "test_objectdataset_augmentedrot_scale75.h5"
    expected = (f"ScanObjectNN data not found at '{missing}': set dataset.common.data_dir to the h5_files/main_split "
                f"folder (the one holding test_objectdataset_augmentedrot_scale75.h5).")
    with pytest.raises(DataNotFoundError, match=f"^{re.escape(expected)}$"):
        scanobjectnn.ScanObjectNNHardest(scanobjectnn_root / "main_split_nobg", "test")
    with pytest.raises(ConfigError, match="set dataset.common.NAME to ScanObjectNN to use another variant"):
        scanobjectnn.ScanObjectNNHardest(scanobjectnn_root / "main_split", "train", variant="OBJ_BG")


def test_modelnet40_ply2048_builds_from_upstream_config(ply2048_parent: Path) -> None:
    common = {"NAME": "ModelNet40Ply2048", "data_dir": str(ply2048_parent)}
    train = loader(common, "train", {"split": "train", "num_points": 32})
    batch = next(iter(train))
    assert batch["pos"].shape == (2, 32, 3) and batch["x"].shape == (2, 32, 4)  # pos + heights
    val = loader(common, "val", {"split": "test", "num_points": 32})
    assert len(val.dataset) == 2 and val.dataset.split == "test"
    labels = np.concatenate([b["y"].numpy() for b in val])
    assert labels.tolist() == [0, 1]
