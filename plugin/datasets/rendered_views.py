"""Pre-training data of point-picture methods: points, rendered views and their cameras.

On-disk format (written by ``tools/render_views.py``; renders made elsewhere, e.g. textured
ShapeNet renders, fit too when their camera matrices are supplied)::

    <data_dir>/
      meta.json             {"classes": [...], "image_size": 224, ...}  (free-form, classes used)
      train.txt, test.txt   one object a line: "<object_id> <label>"
      <object_id>/
        points.npy          (N, 3) xyz or (N, 6) xyz + normals, float32, in the cameras' world frame
        view_00.png ...     V rendered views, square RGB
        cameras.npz         view (V,4,4) world-to-camera, proj (V,4,4) camera-to-clip (plugin.render.cameras);
                            written last, so an object without it is unfinished

Camera convention: :mod:`plugin.render.cameras`.
"""
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from openpoints.dataset.build import DATASETS
from PIL import Image
from torch.utils.data import Dataset

from ..errors import BadInputError, DataNotFoundError
from ..render.cameras import compensate_rotation
from .validation import resolve_split

PREPARE = "python tools/render_views.py --help"


def read_split(data_dir: Path, split: str) -> List[Tuple[str, int]]:
    """``(object_id, label)`` pairs of ``<data_dir>/<split>.txt``."""
    path = data_dir / f"{split}.txt"
    if not path.is_file():
        raise DataNotFoundError(f"Rendered views not found at '{path}': set dataset.common.data_dir to a folder "
                                f"written by tools/render_views.py (see `{PREPARE}`).")
    pairs = []
    for line in path.read_text().splitlines():
        if line.strip():
            object_id, label = line.split()
            pairs.append((object_id, int(label)))
    return pairs


def rotation_about(axis: int, angle: float) -> np.ndarray:
    """3x3 rotation by ``angle`` radians about coordinate ``axis`` (0: x, 1: y, 2: z)."""
    c, s = math.cos(angle), math.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    rot = np.eye(3, dtype=np.float32)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot


@DATASETS.register_module()
class RenderedViews(Dataset):
    """One object's points and one of its rendered views with the view's cameras per sample.

    In ``train``, points are a random ``num_points`` subset, the view is drawn at random, and a
    random rotation about ``rotation_axis`` is applied to the points (and normals) and compensated
    in ``view``, so the point-to-pixel correspondence stays exact. ``test`` uses the first points
    and view 0, unrotated.

    Args:
        data_dir: a folder in the format above.
        split: ``train``, ``val`` (reads ``test``) or ``test``.
        num_points: points per sample.
        use_normals: ``x`` is xyz + normals (needs (N,6) points) instead of xyz.
        image_mean: per-channel mean of the 2D backbone's input normalisation.
        image_std: per-channel std of the 2D backbone's input normalisation.
        rotation_axis: 0, 1 or 2 for random rotations about that axis in train; None for none.
        transform: unused (the augmentation above keeps the cameras consistent); accepted for configs.
    """

    def __init__(self, data_dir: str, split: str = "train", num_points: int = 1024, use_normals: bool = False,
                 image_mean: Sequence[float] = (0.485, 0.456, 0.406),
                 image_std: Sequence[float] = (0.229, 0.224, 0.225), rotation_axis: Optional[int] = 1,
                 transform: Any = None, **kwargs: Any):
        super().__init__()
        self.root = Path(data_dir)
        if not self.root.is_dir():
            raise DataNotFoundError(f"Rendered views not found at '{self.root}': set dataset.common.data_dir to a "
                                    f"folder written by tools/render_views.py (see `{PREPARE}`).")
        self.split = resolve_split(split, "RenderedViews")
        self.items = read_split(self.root, self.split)
        unfinished = [o for o, _ in self.items if not (self.root / o / "cameras.npz").is_file()]
        if unfinished:
            raise DataNotFoundError(f"{len(unfinished)} objects of {self.root / (self.split + '.txt')} are not "
                                    f"rendered yet (first: {unfinished[0]}): rerun tools/render_views.py with the "
                                    f"same --out, it resumes.")
        meta_path = self.root / "meta.json"
        self.classes = json.loads(meta_path.read_text()).get("classes", []) if meta_path.is_file() else []
        self.labels = np.array([label for _, label in self.items], dtype=np.int64)
        self.num_points, self.use_normals, self.rotation_axis = num_points, use_normals, rotation_axis
        self.mean = torch.tensor(image_mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(image_std, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.items)

    def _points(self, folder: Path) -> np.ndarray:
        points = np.load(folder / "points.npy").astype(np.float32)
        if points.ndim != 2 or points.shape[0] == 0 or not np.isfinite(points).all():
            raise BadInputError(f"'{folder / 'points.npy'}' is empty or holds NaN/inf: re-render that object.")
        if self.use_normals and points.shape[1] < 6:
            raise BadInputError(f"'{folder / 'points.npy'}' has no normals: set dataset.common.use_normals to "
                                f"False or render from a source with normals.")
        if points.shape[0] < self.num_points:
            raise BadInputError(f"'{folder / 'points.npy'}' holds {points.shape[0]} points: set "
                                f"dataset.common.num_points to at most that.")
        return points

    def __getitem__(self, index: int) -> Dict[str, Any]:
        object_id, label = self.items[index]
        folder = self.root / object_id
        points = self._points(folder)
        cameras = np.load(folder / "cameras.npz")
        train = self.split == "train"
        if train:
            points = points[np.random.permutation(len(points))[:self.num_points]]
            v = np.random.randint(len(cameras["view"]))
        else:
            points, v = points[:self.num_points], 0
        view = torch.from_numpy(cameras["view"][v].astype(np.float32))
        pos, normals = points[:, :3], points[:, 3:6]
        if train and self.rotation_axis is not None:
            rot = rotation_about(self.rotation_axis, np.random.uniform(0, 2 * math.pi))
            pos, normals = pos @ rot.T, normals @ rot.T
            view = compensate_rotation(view, torch.from_numpy(rot))
        image = np.asarray(Image.open(folder / f"view_{v:02d}.png").convert("RGB"), dtype=np.float32) / 255.0
        img = (torch.from_numpy(image).permute(2, 0, 1) - self.mean) / self.std
        pos = torch.from_numpy(np.ascontiguousarray(pos))
        x = torch.cat([pos, torch.from_numpy(np.ascontiguousarray(normals))], 1) if self.use_normals else pos
        return {"pos": pos, "x": x, "img": img, "view": view,
                "proj": torch.from_numpy(cameras["proj"][v].astype(np.float32)), "y": torch.tensor(label)}
