"""Pre-training data of point-picture methods: points, rendered views and their cameras.

On-disk format (written by ``tools/render_views.py``; renders made elsewhere, e.g. textured
ShapeNet renders, fit too when their camera matrices are supplied)::

    <data_dir>/
      meta.json             {"classes": [...], "image_size": 224, ...}  (free-form, classes used)
      train.txt, test.txt   one object a line: "<object_id> <label>"
      <object_id>/
        points.npy          (N, 3) xyz or (N, 6) xyz + normals, float32, in the cameras' world frame,
                            centred and scaled into the unit sphere (:func:`center_and_scale`)
        view_00.png ...     V rendered views, square RGB
        cameras.npz         view (V,4,4) world-to-camera, proj (V,4,4) camera-to-clip (plugin.render.cameras);
                            written last, so an object without it is unfinished

Camera convention: :mod:`plugin.render.cameras`. Images are returned in [0, 1]: each model normalises
them for its own 2D backbone.
"""
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, TypeVar

import numpy as np
import torch
from openpoints.dataset.build import DATASETS
from openpoints.transforms.transforms_factory import DataTransforms
from PIL import Image
from torch.utils.data import Dataset

from ..errors import BadInputError, ConfigError, DataNotFoundError
from ..ops import pointnet2_utils
from ..render.cameras import compensate_rotation
from .validation import resolve_split

PREPARE = "python tools/render_views.py --help"
SAMPLINGS = ("random", "fps")
ROTATION_AXES = (0, 1, 2, None)
Cloud = TypeVar("Cloud", np.ndarray, torch.Tensor)


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


def center_and_scale(xyz: Cloud) -> Tuple[Cloud, float]:
    """Centre a cloud at its mean and scale it into the unit sphere (the pre-training clouds' frame).

    ``tools/render_views.py`` writes every ``points.npy`` through this function, and the SVM probe
    applies it to the probe clouds (:class:`PointCloudUnitSphere`), so both see clouds in one frame.

    Args:
        xyz: (N, 3) points, NumPy or torch.

    Returns:
        ``(centred and scaled xyz, the scale divided by)``.
    """
    centred = xyz - xyz.mean(0)
    scale = max(float((centred ** 2).sum(-1).max()) ** 0.5, 1e-9)
    return centred / scale, scale


@DataTransforms.register_module()
class PointCloudUnitSphere:
    """OpenPoints transform: :func:`center_and_scale` of ``pos``; ``heights`` (height above the lowest
    point) are divided by the same scale, as if computed after it.

    Args:
        **kwargs: ``datatransforms.kwargs`` shared by every transform; unused.
    """

    def __init__(self, **kwargs: Any) -> None:
        pass

    def __call__(self, data: Dict[str, Any]) -> Dict[str, Any]:
        data["pos"], scale = center_and_scale(data["pos"])
        if "heights" in data:
            data["heights"] = data["heights"] / scale
        return data


def rotation_about(axis: int, angle: float) -> np.ndarray:
    """3x3 rotation by ``angle`` radians about coordinate ``axis`` (0: x, 1: y, 2: z)."""
    c, s = math.cos(angle), math.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    rot = np.eye(3, dtype=np.float32)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot


def random_rotation() -> np.ndarray:
    """A 3x3 rotation uniform on SO(3): the matrix of a unit quaternion uniform on the 3-sphere.

    Draws from NumPy's global generator, which the runner seeds (and OpenPoints' ``worker_init_fn`` per worker).
    """
    q = np.random.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]], dtype=np.float32)


def augmentation_rotation(axis: Optional[int]) -> np.ndarray:
    """The pre-training augmentation's random rotation: about coordinate ``axis``, or uniform on SO(3) for None."""
    if axis is None:
        return random_rotation()
    return rotation_about(axis, np.random.uniform(0, 2 * math.pi))


def sample_points(points: np.ndarray, num_points: int, sampling: str, augment: bool) -> np.ndarray:
    """``num_points`` rows of ``points`` (N, C): ``fps`` the farthest point sample from point 0 (always the
    same); ``random`` a random subset when ``augment``, else the first ``num_points``.

    Args:
        points: (N, C) xyz (+ normals) rows, N >= ``num_points``.
        num_points: rows kept.
        sampling: ``random`` or ``fps`` (:data:`SAMPLINGS`).
        augment: whether the sample is augmented (random subsets only then).
    """
    if sampling == "fps":
        return points[farthest_points(points[:, :3], num_points)]
    if augment:
        return points[np.random.permutation(len(points))[:num_points]]
    return points[:num_points]


def count_views(root: Path, object_ids: Sequence[str], prepare: str) -> int:
    """Views per object when ``meta.json`` does not say: the ``view_XX.png`` files of the first object (1 for an
    empty split).

    Args:
        root: the views folder.
        object_ids: the split's objects.
        prepare: the command that writes the views, named in the message.

    Raises:
        DataNotFoundError: the first object holds no view file.
    """
    if not object_ids:
        return 1
    first = root / object_ids[0]
    count = len(list(first.glob("view_*.png")))
    if count == 0:
        raise DataNotFoundError(f"'{first}' holds no view_XX.png: rerun {prepare} into dataset.common.data_dir.")
    return count


def farthest_points(xyz: np.ndarray, num_points: int) -> np.ndarray:
    """Indices (num_points,) of ``num_points`` farthest points of ``xyz`` (N, 3), from point 0: deterministic.

    Uses the project's native op (``pointnet2_ops`` ``furthest_point_sample``).
    """
    with torch.no_grad():
        idx = pointnet2_utils.furthest_point_sample(torch.from_numpy(np.ascontiguousarray(xyz))[None], num_points)
    return idx[0].long().numpy()


@DATASETS.register_module()
class RenderedViews(Dataset):
    """One object's points and one of its rendered views with the view's cameras per sample.

    With augmentation (``augment``; by default in ``train`` only), the view is drawn at random, the
    points are a random ``num_points`` subset (``sampling: random``), and a random rotation (about
    ``rotation_axis``, or uniform on SO(3) when it is None) is applied to the points (and normals) and
    compensated in ``view``, so every point projects to the same pixel as before. Without it: view 0,
    unrotated, and fixed points (the first ``num_points``, or their farthest point sample).

    A sample holds ``pos`` (N,3), ``x`` (N,3|6: xyz [+ normals]), ``heights`` (N,1: height above the
    lowest point along ``gravity_dim`` y, after the rotation; ``feature_keys: pos,heights`` uses it),
    ``img`` (3,H,W) in [0, 1] (unnormalised: the model normalises for its backbone), ``view``, ``proj``
    (4,4) and the label ``y``.

    Args:
        data_dir: a folder in the format above.
        split: ``train``, ``val`` (reads ``test``) or ``test``.
        num_points: points per sample.
        use_normals: ``x`` is xyz + normals (needs (N,6) points) instead of xyz.
        rotation_axis: 0, 1 or 2: augmentation rotates about that axis; None: uniformly on SO(3).
        augment: random view, points and rotation; None: only in ``train``.
        sampling: ``random`` (a random subset when augmenting, else the first points) or ``fps``
            (farthest point sampling from point 0, the same points every time).
        transform: unused (the augmentation above keeps the cameras consistent); accepted for configs.

    Raises:
        ConfigError: an unknown argument or value.
        DataNotFoundError: ``data_dir``, its split list or an object's files are missing.
    """

    gravity_dim = 1  # tools/render_views.py renders y-up (the cameras' up vector), like ScanObjectNN

    def __init__(self, data_dir: str, split: str = "train", num_points: int = 1024, use_normals: bool = False,
                 rotation_axis: Optional[int] = 1, augment: Optional[bool] = None, sampling: str = "random",
                 transform: Any = None, **kwargs: Any):
        super().__init__()
        check_arguments(rotation_axis, augment, sampling, kwargs)
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
        self.augment = self.split == "train" if augment is None else augment
        self.sampling = sampling

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
        points = sample_points(self._points(folder), self.num_points, self.sampling, self.augment)
        cameras = np.load(folder / "cameras.npz")
        v = np.random.randint(len(cameras["view"])) if self.augment else 0
        view = torch.from_numpy(cameras["view"][v].astype(np.float32))
        pos, normals = points[:, :3], points[:, 3:6] if self.use_normals else None
        if self.augment:
            rot = augmentation_rotation(self.rotation_axis)  # Pic@Point pre-training rotates the objects at random
            pos = pos @ rot.T
            normals = normals @ rot.T if normals is not None else None
            view = compensate_rotation(view, torch.from_numpy(rot))
        image = np.asarray(Image.open(folder / f"view_{v:02d}.png").convert("RGB"), dtype=np.float32) / 255.0
        pos = torch.from_numpy(np.ascontiguousarray(pos, dtype=np.float32))
        x = torch.cat([pos, torch.from_numpy(np.ascontiguousarray(normals))], 1) if normals is not None else pos
        height = pos[:, self.gravity_dim:self.gravity_dim + 1]
        return {"pos": pos, "x": x, "heights": height - height.min(), "img": torch.from_numpy(image).permute(2, 0, 1),
                "view": view, "proj": torch.from_numpy(cameras["proj"][v].astype(np.float32)),
                "y": torch.tensor(label)}


def check_arguments(rotation_axis: Any, augment: Any, sampling: Any, unknown: Dict[str, Any]) -> None:
    """Raise :class:`ConfigError` for a value or key :class:`RenderedViews` does not know."""
    if "image_mean" in unknown or "image_std" in unknown:
        raise ConfigError("The views come in [0, 1] and the model normalises them for its own backbone: remove "
                          "dataset.common.image_mean and image_std from the config.")
    if unknown:
        raise ConfigError(f"Unknown argument(s) {', '.join(sorted(unknown))} of the rendered views: use data_dir, "
                          f"split, num_points, use_normals, rotation_axis, augment or sampling under dataset.common.")
    if rotation_axis not in ROTATION_AXES or isinstance(rotation_axis, bool):
        raise ConfigError(f"dataset.common.rotation_axis is {rotation_axis!r}: set it to 0, 1 or 2 (rotations about "
                          f"that axis) or null (uniformly random rotations).")
    if augment is not None and not isinstance(augment, bool):
        raise ConfigError(f"dataset.common.augment is {augment!r}: set it to True, False or null (augment the "
                          f"train split only).")
    if sampling not in SAMPLINGS:
        raise ConfigError(f"dataset.common.sampling is {sampling!r}: set it to {' or '.join(SAMPLINGS)}.")
