"""ModelNet40 classification datasets: the ``modelnet40_normal_resampled`` txt layout and the ``ply_hdf5_2048`` files.

Both keep every cloud of the split in memory and yield OpenPoints sample dicts: ``pos`` (N, 3),
``normals`` (N, 3) when the files have them, ``y``, and after the transform ``x`` = ``pos``
(+ ``normals`` when ``use_normals``) (+ ``heights`` when the transform added them).
"""
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
import torch
from openpoints.dataset.build import DATASETS
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import BadInputError, ConfigError, DataNotFoundError
from .h5_clouds import read_labelled_clouds
from .validation import check_cloud, check_labels, check_num_points, check_positive_points, resolve_split

LOGGER = logging.getLogger(__name__)  # a child of the run's "plugin" logger

# Official order: the label of a shape is its class's index here.
MODELNET40_CLASSES = [
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard", "lamp",
    "laptop", "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink",
    "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase", "wardrobe", "xbox",
]
# ModelNet10's classes in its official label order (a subset of the 40).
MODELNET10_CLASSES = ["bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table", "toilet"]
SUBSETS = {"modelnet40": 40, "modelnet10": 10}
NORMAL_RESAMPLED_DIR = "modelnet40_normal_resampled"
PLY2048_DIR = "modelnet40_ply_hdf5_2048"


def modelnet_features(data: Dict[str, Any], use_normals: bool) -> torch.Tensor:
    """Features ``x`` (N, C) as upstream: ``pos``, then ``normals`` if ``use_normals``, then ``heights`` if present."""
    keys = ["pos"] + (["normals"] if use_normals else []) + (["heights"] if "heights" in data else [])
    return torch.cat([torch.as_tensor(data[key]) for key in keys], dim=1)


class _InMemoryModelNet(Dataset):
    """Sampling shared by the ModelNet40 datasets; subclasses fill ``points``, ``normals`` and ``labels``."""

    points: np.ndarray  # (S, num_points, 3)
    normals: Optional[np.ndarray]  # (S, num_points, 3) or None
    labels: np.ndarray  # (S,) int64

    def __init__(self, split: str, num_points: int, use_normals: bool, transform: Optional[Callable],
                 augment: Optional[bool]) -> None:
        super().__init__()
        check_positive_points(num_points)
        self.split = split
        self.augment = split == "train" if augment is None else bool(augment)
        self.num_points = num_points
        self.use_normals = use_normals
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        # One permutation for points and normals keeps them aligned (upstream shuffles points only).
        order = np.random.permutation(self.num_points) if self.augment else np.arange(self.num_points)
        data = {"pos": self.points[idx][order], "y": self.labels[idx]}
        if self.normals is not None:
            data["normals"] = self.normals[idx][order]
        if self.transform is not None:
            data = self.transform(data)
        data["x"] = modelnet_features(data, self.use_normals)
        return data


@DATASETS.register_module()
class ModelNet40NormalResampled(_InMemoryModelNet):
    """ModelNet40 (or ModelNet10) from the ``modelnet40_normal_resampled`` txt files, read once at construction.

    ModelNet10 reads the ``modelnet10_*`` list files when the folder has them; otherwise it keeps the
    shapes of the 10 ModelNet10 classes from the ``modelnet40_*`` lists, labelled by their index in
    :data:`MODELNET10_CLASSES`. ``classes`` are the names in label order, ``shape_ids`` the loaded shapes.

    Args:
        data_dir: the ``modelnet40_normal_resampled`` folder (its parent also works, as upstream).
        split: ``train``, ``val`` or ``test``; ``val`` reads the test list, as upstream.
        num_points: points kept per shape: the first ones of each file, which are uniformly resampled.
        use_normals: append the normals to the features ``x``.
        num_classes: 40 or 10 (default: that of ``subset``, else 40).
        subset: ``modelnet40`` or ``modelnet10``; the same choice as ``num_classes``, by name.
        transform: OpenPoints transform applied to each sample dict.
        augment: shuffle the points of each sample (default: in the train split only); False reads every
            split in file order, e.g. for probes.
        **kwargs: other config keys, ignored.
    """

    def __init__(self, data_dir: str, split: str = "train", num_points: int = 1024, use_normals: bool = False,
                 num_classes: Optional[int] = None, subset: Optional[str] = None,
                 transform: Optional[Callable] = None, augment: Optional[bool] = None, **kwargs: Any) -> None:
        super().__init__(resolve_split(split, "ModelNet40"), num_points, use_normals, transform, augment)
        num_classes = _subset_classes(subset, num_classes)
        root, own_lists = self._find_root(Path(data_dir), num_classes)
        lists = f"modelnet{num_classes if own_lists else 40}"
        names_file = root / f"{lists}_shape_names.txt"
        self.classes: List[str] = _read_lines(names_file)
        list_file = root / f"{lists}_{self.split}.txt"
        if not list_file.is_file():
            raise DataNotFoundError(f"ModelNet40 split list '{list_file}' not found: set dataset.common.data_dir to "
                                    f"a modelnet40_normal_resampled folder that has it.")
        shape_ids = _read_lines(list_file)
        if not shape_ids:
            raise BadInputError(f"ModelNet40 split list '{list_file}' names no shapes: list one shape id "
                                f"(e.g. airplane_0001) per line.")
        class_of = [shape_id.rsplit("_", 1)[0] for shape_id in shape_ids]
        for shape_id, name in zip(shape_ids, class_of):
            if name not in self.classes:
                raise BadInputError(f"Shape '{shape_id}' in '{list_file}' belongs to no class of "
                                    f"{names_file}: remove it from the list.")
        if num_classes == 10 and not own_lists:  # ModelNet10 as the subset of the ModelNet40 lists
            self.classes = list(MODELNET10_CLASSES)
            kept = [i for i, name in enumerate(class_of) if name in self.classes]
            if not kept:
                raise BadInputError(f"'{list_file}' lists no shape of a ModelNet10 class ({', '.join(self.classes)}): "
                                    f"set dataset.common.data_dir to a folder holding them, or use ModelNet40.")
            shape_ids, class_of = [shape_ids[i] for i in kept], [class_of[i] for i in kept]
        self.num_classes = len(self.classes)
        self.labels = np.array([self.classes.index(name) for name in class_of], dtype=np.int64)

        paths = [root / name / f"{shape_id}.txt" for shape_id, name in zip(shape_ids, class_of)]
        for path in paths:  # fail before the slow parsing
            if not path.is_file():
                raise DataNotFoundError(f"ModelNet40 shape file '{path}' listed in {list_file.name} not found: "
                                        f"restore it or remove '{path.stem}' from {list_file.name}.")
        self.shape_ids: List[str] = shape_ids
        clouds = np.empty((len(paths), num_points, 6), dtype=np.float32)
        for i, path in enumerate(tqdm(paths, desc=f"ModelNet{num_classes} {self.split}", unit="shape", disable=None)):
            clouds[i] = _read_shape(path, num_points)
        self.points, self.normals = clouds[..., :3], clouds[..., 3:]
        LOGGER.info("Loaded ModelNet%d %s: %d shapes of %d points", num_classes, self.split, len(self), num_points)

    @staticmethod
    def _find_root(data_dir: Path, num_classes: int) -> Tuple[Path, bool]:
        """``(root, own_lists)``: ``data_dir`` or ``data_dir/modelnet40_normal_resampled``, whichever holds the
        shape names, and whether ModelNet10 has its own ``modelnet10_*`` lists there (always True for 40)."""
        names = f"modelnet{num_classes}_shape_names.txt"
        candidates = (data_dir, data_dir / NORMAL_RESAMPLED_DIR)
        for root in candidates:
            if (root / names).is_file():
                return root, True
        for root in candidates:
            if (root / "modelnet40_shape_names.txt").is_file():  # ModelNet10 filtered from the 40 lists
                return root, False
        raise DataNotFoundError(f"ModelNet40 data not found at '{data_dir}': set dataset.common.data_dir to the "
                                f"{NORMAL_RESAMPLED_DIR} folder (the one holding modelnet40_shape_names.txt).")


def _subset_classes(subset: Optional[str], num_classes: Optional[int]) -> int:
    """The class count of ``subset``/``num_classes`` (default 40), which must agree when both are given."""
    if subset is not None and subset not in SUBSETS:
        raise ConfigError(f"Unknown ModelNet subset '{subset}': set dataset.common.subset to modelnet40 or modelnet10.")
    if num_classes is not None and num_classes not in (10, 40):
        raise ConfigError(f"ModelNet has 40 or 10 classes, got {num_classes}: set dataset.common.num_classes "
                          f"to 40 or 10.")
    if subset is not None and num_classes is not None and SUBSETS[subset] != num_classes:
        raise ConfigError(f"dataset.common.subset {subset} has {SUBSETS[subset]} classes but num_classes is "
                          f"{num_classes}: remove dataset.common.num_classes or make them agree.")
    return SUBSETS[subset] if subset is not None else (num_classes or 40)


def _read_lines(path: Path) -> List[str]:
    """Non-empty stripped lines of a text file."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _read_shape(path: Path, num_points: int) -> np.ndarray:
    """First ``num_points`` rows ``x,y,z,nx,ny,nz`` of one shape file, validated."""
    try:
        rows = pd.read_csv(path, header=None, nrows=num_points, dtype=np.float32).to_numpy()
    except pd.errors.EmptyDataError:
        rows = np.empty((0, 6), dtype=np.float32)
    except ValueError as exc:
        raise BadInputError(f"ModelNet40 shape file '{path}' is not comma-separated numbers: replace it with "
                            f"x,y,z,nx,ny,nz lines.") from exc
    check_cloud(rows, f"'{path}'")
    if rows.shape[1] < 6:
        raise BadInputError(f"ModelNet40 shape file '{path}' has {rows.shape[1]} columns: replace it with "
                            f"x,y,z,nx,ny,nz lines.")
    check_num_points(num_points, len(rows), f"'{path}'")
    return rows[:, :6]


# Replaces upstream's class of this name, which downloads the archive from the internet when the folder is missing.
@DATASETS.register_module(force=True)
class ModelNet40Ply2048(_InMemoryModelNet):
    """ModelNet40 from the ``modelnet40_ply_hdf5_2048`` files (``ply_data_{train,test}*.h5``); never downloads.

    Args:
        data_dir: the ``modelnet40_ply_hdf5_2048`` folder or its parent (the upstream convention).
        split: ``train``, ``val`` or ``test``; ``val`` reads the test files, as upstream.
        num_points: points kept per cloud: the first ones of the 2048 stored.
        use_normals: append the normals (h5 dataset ``normal``) to the features ``x``.
        transform: OpenPoints transform applied to each sample dict.
        augment: shuffle the points of each sample (default: in the train split only).
        **kwargs: other config keys, ignored.
    """

    classes = MODELNET40_CLASSES
    num_classes = len(MODELNET40_CLASSES)

    def __init__(self, data_dir: str, split: str = "train", num_points: int = 1024, use_normals: bool = False,
                 transform: Optional[Callable] = None, augment: Optional[bool] = None, **kwargs: Any) -> None:
        super().__init__(resolve_split(split, "ModelNet40Ply2048"), num_points, use_normals, transform, augment)
        folder = self._find_folder(Path(data_dir))
        files = sorted(folder.glob(f"ply_data_{self.split}*.h5"))
        if not files:
            raise DataNotFoundError(f"No ply_data_{self.split}*.h5 files in '{folder}': set dataset.common.data_dir "
                                    f"to a complete {PLY2048_DIR} folder.")
        parts = [read_labelled_clouds(path, normals_key="normal") for path in files]
        for path, part in zip(files, parts):
            check_num_points(num_points, part.points.shape[1], f"'{path}'")
            check_labels(part.labels, self.num_classes, f"'{path}'")
            if use_normals and part.normals is None:
                raise BadInputError(f"'{path}' has no 'normal' dataset: set dataset.common.use_normals to False.")
        self.points = np.concatenate([part.points[:, :num_points] for part in parts])
        self.labels = np.concatenate([part.labels for part in parts])
        self.normals = (np.concatenate([part.normals[:, :num_points] for part in parts])
                        if all(part.normals is not None for part in parts) else None)
        LOGGER.info("Loaded ModelNet40Ply2048 %s: %d clouds of %d points", self.split, len(self), num_points)

    @staticmethod
    def _find_folder(data_dir: Path) -> Path:
        """Return ``data_dir`` if it holds the h5 files, else ``data_dir/modelnet40_ply_hdf5_2048`` if that exists."""
        if any(data_dir.glob("ply_data_*.h5")):
            return data_dir
        if (data_dir / PLY2048_DIR).is_dir():
            return data_dir / PLY2048_DIR
        raise DataNotFoundError(f"ModelNet40 h5 data not found at '{data_dir}': set dataset.common.data_dir to the "
                                f"{PLY2048_DIR} folder (the one holding ply_data_train0.h5) or its parent.")
