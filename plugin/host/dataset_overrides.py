"""Replacements for OpenPoints dataset classes that cannot run here; importing this module registers them."""
from pathlib import Path
from typing import Any, Callable, Optional

from openpoints.dataset.build import DATASETS

from ..datasets.scanobjectnn import ScanObjectNN
from ..errors import ConfigError, DataNotFoundError

HARDEST_VARIANT = "PB_T50_RS"


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
