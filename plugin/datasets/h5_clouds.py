"""Reading labelled point clouds from the standard h5 files of ModelNet40 (ply_hdf5_2048) and ScanObjectNN."""
from pathlib import Path
from typing import NamedTuple, Optional

import h5py
import numpy as np

from ..errors import BadInputError
from .validation import check_clouds


class LabelledClouds(NamedTuple):
    """Clouds of one h5 file: ``points`` (B, N, 3) float32, ``labels`` (B,) int64, ``normals`` or None."""

    points: np.ndarray
    labels: np.ndarray
    normals: Optional[np.ndarray]


def read_labelled_clouds(path: Path, normals_key: Optional[str] = None) -> LabelledClouds:
    """Read datasets ``data`` (B, N, 3) and ``label`` (B,) or (B, 1), plus ``normals_key`` when present.

    Raises :class:`BadInputError` for an unreadable file, missing datasets, wrong shapes, or an
    empty or non-finite cloud (naming the file and the cloud index).
    """
    try:
        with h5py.File(path, "r") as f:
            for key in ("data", "label"):
                if key not in f:
                    raise BadInputError(f"'{path}' has no '{key}' dataset: replace it with the standard h5 file.")
            points = np.asarray(f["data"][()], dtype=np.float32)
            labels = np.asarray(f["label"][()], dtype=np.int64).reshape(-1)
            normals = (np.asarray(f[normals_key][()], dtype=np.float32)
                       if normals_key is not None and normals_key in f else None)
    except OSError as exc:
        raise BadInputError(f"'{path}' is not a readable h5 file: replace it with the standard h5 file.") from exc
    if points.ndim != 3 or points.shape[2] != 3 or len(labels) != len(points):
        raise BadInputError(f"'{path}' holds data of shape {points.shape} and {len(labels)} labels, expected "
                            f"(B, N, 3) and B labels: replace it with the standard h5 file.")
    if normals is not None and normals.shape != points.shape:
        raise BadInputError(f"'{path}' holds normals of shape {normals.shape} for points of shape "
                            f"{points.shape}: replace it with the standard h5 file.")
    check_clouds(points, str(path))
    if normals is not None:
        check_clouds(normals, str(path))
    return LabelledClouds(points, labels, normals)
