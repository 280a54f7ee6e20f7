"""Checks shared by the dataset classes: split names, requested point counts and cloud contents."""
import numpy as np

from ..errors import BadInputError, ConfigError

SPLITS = ("train", "val", "test")


def resolve_split(split: str, dataset: str) -> str:
    """Return the stored partition for ``split``: ``train`` stays, ``val`` and ``test`` both read the test files.

    The public splits of ModelNet40 and ScanObjectNN have no validation part, so validation uses
    the test files, as upstream does.
    """
    if split not in SPLITS:
        raise ConfigError(f"Unknown {dataset} split '{split}': set dataset.<train|val|test>.split to "
                          f"train, val or test.")
    return "train" if split == "train" else "test"


def check_positive_points(num_points: int) -> None:
    """Raise :class:`ConfigError` unless ``num_points`` is positive."""
    if num_points <= 0:
        raise ConfigError(f"num_points is {num_points}: set dataset.common.num_points to a positive integer.")


def check_num_points(num_points: int, available: int, source: str) -> None:
    """Raise :class:`ConfigError` unless ``0 < num_points <= available`` (points per cloud in ``source``)."""
    check_positive_points(num_points)
    if num_points > available:
        raise ConfigError(f"num_points is {num_points} but {source} holds only {available} points per cloud: "
                          f"set dataset.common.num_points to at most {available}.")


def check_cloud(cloud: np.ndarray, where: str) -> None:
    """Raise :class:`BadInputError` if ``cloud`` (N, C) has no points or holds NaN/inf.

    Args:
        cloud: the points (and any per-point attributes) of one cloud.
        where: names the cloud in the message, e.g. ``"'/d/a.txt'"`` or ``"5 of '/d/test.h5'"``.
    """
    if cloud.size == 0:
        raise BadInputError(f"Point cloud {where} is empty: replace it with a valid cloud or remove it "
                            f"from the dataset.")
    if not np.isfinite(cloud).all():
        raise BadInputError(f"Point cloud {where} has NaN or infinite values: replace it with a valid cloud "
                            f"or remove it from the dataset.")


def check_clouds(clouds: np.ndarray, source: str) -> None:
    """Run :func:`check_cloud` on a stack of clouds (B, N, C) from file ``source``, naming the first bad index."""
    if clouds.size == 0:
        raise BadInputError(f"'{source}' holds no points: replace it with a complete file.")
    bad = np.flatnonzero(~np.isfinite(clouds).all(axis=(1, 2)))
    if bad.size:
        check_cloud(clouds[bad[0]], f"{bad[0]} of '{source}'")


def check_labels(labels: np.ndarray, num_classes: int, source: str) -> None:
    """Raise :class:`BadInputError` if a label in ``labels`` (from ``source``) is outside ``[0, num_classes)``."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise BadInputError(f"Label {labels[bad[0]]} of cloud {bad[0]} in {source} is outside 0..{num_classes - 1}: "
                            f"replace the file with the standard one.")
