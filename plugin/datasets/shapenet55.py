"""The ShapeNet-55 point clouds of Point-BERT's benchmark, as a pre-training source.

Layout (as distributed with Point-BERT / Point-MAE)::

    <data_dir>/shapenet_pc/<synset>-<model>.npy     # (8192, 3) float xyz per object
    <data_dir>/ShapeNet-55/{train,test}.txt         # one ``<synset>-<model>.npy`` per line
                                                    # (the lists may also sit in <data_dir> itself)

Labels index the sorted synset ids of the split lists; ``shapenet_synset_dict.json``-style files
(synset id -> name) give readable class names.
"""
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import DataNotFoundError
from .rendered_views import farthest_points

__all__ = ["ShapeNet55Split", "load_shapenet55_cloud", "read_shapenet55_split"]

ShapeNet55Split = Tuple[List[Path], np.ndarray, List[str], List[str]]


def _split_list(data_dir: Path, split: str) -> Path:
    for candidate in (data_dir / "ShapeNet-55" / f"{split}.txt", data_dir / f"{split}.txt"):
        if candidate.is_file():
            return candidate
    raise DataNotFoundError(
        f"No ShapeNet-55 split list '{split}.txt' in {data_dir} or {data_dir / 'ShapeNet-55'}: point --data-dir "
        f"at the ShapeNet55-34 folder that holds shapenet_pc/ and ShapeNet-55/{{train,test}}.txt.")


def read_shapenet55_split(data_dir: str, split: str, synset_names: Optional[str] = None) -> ShapeNet55Split:
    """The objects of one ShapeNet-55 split.

    Args:
        data_dir: the ShapeNet55-34 folder (``shapenet_pc/`` and the split lists).
        split: ``train`` or ``test``.
        synset_names: optional JSON file mapping synset id to class name.

    Returns:
        ``(npy paths, labels (S,) int64, class names, object ids)``; the classes are the sorted
        synsets of both split lists, so train and test share one label space.
    """
    root = Path(data_dir)
    if not (root / "shapenet_pc").is_dir():
        raise DataNotFoundError(f"{root / 'shapenet_pc'} does not exist: point --data-dir at the ShapeNet55-34 "
                                f"folder that holds shapenet_pc/<synset>-<model>.npy.")
    lists = {s: _split_list(root, s).read_text().split() for s in dict.fromkeys([split, "train", "test"])}
    synsets = sorted({name.split("-", 1)[0] for names in lists.values() for name in names})
    names: Dict[str, str] = json.loads(Path(synset_names).read_text()) if synset_names else {}
    entries = lists[split]
    labels = np.array([synsets.index(e.split("-", 1)[0]) for e in entries], dtype=np.int64)
    ids = [Path(e).stem for e in entries]
    return [root / "shapenet_pc" / e for e in entries], labels, [names.get(s, s) for s in synsets], ids


def load_shapenet55_cloud(path: Path, num_points: int) -> np.ndarray:
    """One object's ``num_points`` farthest-point-sampled xyz points, (num_points, 3) float32.

    Args:
        path: the object's ``.npy`` file.
        num_points: points to keep (all of them when the file has fewer).
    """
    if not Path(path).is_file():
        raise DataNotFoundError(f"{path} is missing: re-extract shapenet_pc/ or remove it from the split list.")
    points = np.load(path).astype(np.float32)[:, :3]
    if len(points) <= num_points:
        return points
    return points[farthest_points(points, num_points)]
