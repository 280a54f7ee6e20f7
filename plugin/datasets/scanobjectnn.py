"""ScanObjectNN classification dataset read from the standard ``h5_files`` release, all variants, CPU only.

:class:`ScanObjectNNHardest` replaces OpenPoints' class of that name (registered over it), which needs CUDA.
"""
import logging
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch
from openpoints.dataset.build import DATASETS
from torch.utils.data import Dataset

from ..errors import ConfigError, DataNotFoundError
from .fps_sampling import cached_fps_downsample
from .h5_clouds import read_labelled_clouds
from .validation import check_labels, check_num_points, resolve_split

LOGGER = logging.getLogger(__name__)  # a child of the run's "plugin" logger

SCANOBJECTNN_CLASSES = [
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door",
    "shelf", "table", "bed", "pillow", "sink", "sofa", "toilet",
]
# Variant -> h5 file under h5_files/; {} is "training" or "test".
VARIANT_FILES = {
    "OBJ_BG": "main_split/{}_objectdataset.h5",
    "OBJ_ONLY": "main_split_nobg/{}_objectdataset.h5",
    "PB_T50_RS": "main_split/{}_objectdataset_augmentedrot_scale75.h5",
}
HARDEST_VARIANT = "PB_T50_RS"


@DATASETS.register_module()
class ScanObjectNN(Dataset):
    """ScanObjectNN (15 classes) from one variant's h5 files, held in memory.

    Train samples are a random ``num_points`` subset of each stored cloud, in random order. Test
    samples (``val`` and ``test``), and train samples with ``augment: False``, are, with
    ``uniform_sample``, ``num_points`` farthest points of each cloud, computed on CPU once per file and
    cached; otherwise the first ``num_points``.

    Args:
        data_dir: the ``h5_files`` folder (holding ``main_split`` and ``main_split_nobg``).
        split: ``train``, ``val`` or ``test``; ``val`` reads the test file, as upstream.
        variant: ``OBJ_BG``, ``OBJ_ONLY`` or ``PB_T50_RS`` (the hardest).
        num_points: points per sample.
        uniform_sample: farthest point sampling of the test split.
        transform: OpenPoints transform applied to each sample dict.
        cache_fps: also cache the test-split FPS as ``.npy`` on disk (next to the h5 file if writable,
            else under ``~/.cache/openpoints-plugin/``).
        augment: draw a random point subset per sample (default: in the train split only); False reads
            every split the test way, e.g. for probes.
        **kwargs: other config keys, ignored.
    """

    classes = SCANOBJECTNN_CLASSES
    num_classes = len(SCANOBJECTNN_CLASSES)
    gravity_dim = 1

    def __init__(self, data_dir: str, split: str = "train", variant: str = "PB_T50_RS", num_points: int = 1024,
                 uniform_sample: bool = True, transform: Optional[Callable] = None, cache_fps: bool = True,
                 augment: Optional[bool] = None, **kwargs: Any) -> None:
        super().__init__()
        self.split = resolve_split(split, "ScanObjectNN")
        self.augment = self.split == "train" if augment is None else bool(augment)
        self.variant = variant
        self.num_points = num_points
        self.transform = transform
        self.h5_path = self._h5_path(Path(data_dir), variant, "training" if self.split == "train" else "test")
        clouds = read_labelled_clouds(self.h5_path)
        check_num_points(num_points, clouds.points.shape[1], f"'{self.h5_path}'")
        check_labels(clouds.labels, self.num_classes, f"'{self.h5_path}'")
        self.labels = clouds.labels
        if self.augment or num_points == clouds.points.shape[1]:
            self.points = clouds.points
        elif uniform_sample:
            self.points = cached_fps_downsample(clouds.points, num_points, self.h5_path, to_disk=cache_fps)
        else:
            self.points = np.ascontiguousarray(clouds.points[:, :num_points])
        LOGGER.info("Loaded ScanObjectNN %s %s: %d clouds", variant, self.split, len(self))

    def _h5_path(self, data_dir: Path, variant: str, partition: str) -> Path:
        """The h5 file of ``variant`` for ``partition`` (``training`` or ``test``) under ``data_dir``."""
        if variant not in VARIANT_FILES:
            raise ConfigError(f"Unknown ScanObjectNN variant '{variant}': set dataset.common.variant to one of "
                              f"{', '.join(VARIANT_FILES)}.")
        if not data_dir.is_dir():
            raise DataNotFoundError(f"ScanObjectNN data not found at '{data_dir}': set dataset.common.data_dir to "
                                    f"the h5_files folder (the one holding main_split and main_split_nobg).")
        path = data_dir / VARIANT_FILES[variant].format(partition)
        if not path.is_file():
            raise DataNotFoundError(f"ScanObjectNN file '{path}' not found: set dataset.common.data_dir to an "
                                    f"h5_files folder that has it, or choose another dataset.common.variant.")
        return path

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        cloud = self.points[idx]
        if self.augment:
            pos = cloud[np.random.permutation(len(cloud))[:self.num_points]]
        else:
            pos = cloud[:self.num_points].copy()
        data = {"pos": pos, "y": self.labels[idx]}
        if self.transform is not None:
            data = self.transform(data)
        if "heights" not in data:  # upstream's fallback: height above the lowest point
            height = torch.as_tensor(data["pos"])[:, self.gravity_dim:self.gravity_dim + 1]
            data["heights"] = height - height.min()
        data["x"] = torch.cat((torch.as_tensor(data["pos"]), torch.as_tensor(data["heights"])), dim=1)
        return data


# Upstream ScanObjectNNHardest moves the whole test split to CUDA (`.cuda()`) for FPS, so it fails without a GPU.
@DATASETS.register_module(force=True)
class ScanObjectNNHardest(ScanObjectNN):
    """ScanObjectNN PB_T50_RS with upstream's constructor and ``data_dir``, sampling the test split on CPU.

    Args:
        data_dir: the folder holding ``{training,test}_objectdataset_augmentedrot_scale75.h5``
            (``.../h5_files/main_split``, the upstream convention).
        split: ``train``, ``val`` or ``test``.
        num_points: points per sample.
        uniform_sample: farthest point sampling of the test split.
        transform: OpenPoints transform applied to each sample dict.
        **kwargs: passed to :class:`ScanObjectNN` (e.g. ``cache_fps``); ``variant`` may only be PB_T50_RS.
    """

    def __init__(self, data_dir: str, split: str, num_points: int = 2048, uniform_sample: bool = True,
                 transform: Optional[Callable] = None, **kwargs: Any) -> None:
        variant = kwargs.pop("variant", HARDEST_VARIANT)
        if variant != HARDEST_VARIANT:
            raise ConfigError(f"ScanObjectNNHardest is the {HARDEST_VARIANT} variant, got variant '{variant}': set "
                              f"dataset.common.NAME to ScanObjectNN to use another variant.")
        super().__init__(data_dir, split=split, variant=HARDEST_VARIANT, num_points=num_points,
                         uniform_sample=uniform_sample, transform=transform, **kwargs)

    def _h5_path(self, data_dir: Path, variant: str, partition: str) -> Path:
        """The PB_T50_RS file directly in ``data_dir``, as upstream reads it."""
        path = data_dir / f"{partition}_objectdataset_augmentedrot_scale75.h5"
        if not path.is_file():
            raise DataNotFoundError(f"ScanObjectNN data not found at '{path}': set dataset.common.data_dir to the "
                                    f"h5_files/main_split folder (the one holding {path.name}).")
        return path
