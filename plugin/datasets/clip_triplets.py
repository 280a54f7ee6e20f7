"""Point / image / category triplets for aligning a point encoder to frozen image embeddings ("No Captions, No
Problem", Sbrolli & Matteucci; ULIP's triplets without the text).

Reads a folder in the format of :mod:`.rendered_views` (``meta.json`` classes, ``train.txt``/``test.txt``,
``<object_id>/points.npy`` and ``view_XX.png``), written by ``tools/render_views.py`` or by
``tools/import_ulip_shapenet.py`` (ULIP's ShapeNet-55 renders, 30 views 12 degrees apart); ``cameras.npz``
is not needed. The point settings (``num_points``, ``use_normals``, ``rotation_axis``, ``augment``,
``sampling``) are :class:`~.rendered_views.RenderedViews`' with the same meaning, so a config can inherit
``dataset.common`` of ``cfgs/shapenet/default.yaml`` and change only ``NAME``. Optionally a similarity store
(``tools/precompute_similarity.py``, :mod:`plugin.clip.similarity_store`) adds each view's precomputed image
embedding and the object's row in its category's 3D-3D similarity matrix.

Splits: ``test`` is ``test.txt``. ``train`` and ``val`` divide ``train.txt`` per category (Sec. 4.1: 80/20 for
checkpoint selection, never the test list): :func:`holdout_mask` ranks each category's objects by a seeded
hash of their ids, so the division depends on ``split_seed`` and the ids only, not on the file order.
"""
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from openpoints.dataset.build import DATASETS
from PIL import Image
from torch.utils.data import Dataset

from ..clip.similarity_store import SimilarityStore
from ..errors import BadInputError, ConfigError, DataNotFoundError
from .rendered_views import (augmentation_rotation, center_and_scale, check_arguments, count_views, read_split,
                             sample_points)
from .validation import SPLITS, check_cloud, check_num_points

__all__ = ["ClipTriplets", "holdout_mask"]

PREPARE = "tools/render_views.py or tools/import_ulip_shapenet.py"
STORE_KEY = "dataset.common.store"


def holdout_mask(object_ids: Sequence[str], labels: Sequence[int], fraction: float, seed: int = 0) -> np.ndarray:
    """Which objects a per-category holdout keeps apart: a (S,) bool mask, True for the held-out ones.

    In each category of n objects, the ``floor(fraction * n + 1/2)`` objects (at most n - 1, so every
    category keeps a training object) with the smallest ``blake2b(f"{seed}:{object_id}")`` are held out.
    The result depends on the seed and on each object's id and category only, not on their order.

    Args:
        object_ids: the objects' ids, unique.
        labels: their categories.
        fraction: the share held out per category, in [0, 1).
        seed: selects another division.

    Raises:
        BadInputError: an id occurs twice.
    """
    ids = [str(i) for i in object_ids]
    if len(set(ids)) != len(ids):
        twice = next(i for i in ids if ids.count(i) > 1)
        raise BadInputError(f"Object '{twice}' occurs twice in the split list: remove the duplicate line.")
    keys = [hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).hexdigest() for i in ids]
    labels = np.asarray(labels)
    held = np.zeros(len(ids), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = min(len(members) - 1, int(math.floor(fraction * len(members) + 0.5)))
        ranked = sorted(members, key=lambda k: (keys[k], ids[k]))
        held[ranked[:count]] = True
    return held


@DATASETS.register_module()
class ClipTriplets(Dataset):
    """One object's points, one of its views (image and/or precomputed embedding) and its category per sample.

    A sample holds ``pos`` (N,3): the points centred and scaled into the unit sphere, then (when augmenting)
    rotated, translated and jittered (Sec. 4.1); ``x`` (N,3|6): ``pos`` [+ the normals, rotated with the
    points]; ``heights`` (N,1) above the lowest point
    along y (``feature_keys: pos,heights``); ``y`` the category; ``img`` (3,H,W) in [0, 1] (unnormalised, RGB
    as Pillow's ``convert("RGB")`` gives it, as the precompute reads it) unless ``load_images`` is False;
    ``view_index`` and ``index`` (the sample's position in the split). With ``store``: ``img_emb`` (D,) the
    stored embedding of that view, ``sim_category`` and ``sim_row`` (the object's category index and row in
    the store's matrices).

    Points, as in :class:`~.rendered_views.RenderedViews`: with ``sampling: random`` (the default, for one
    vocabulary with it) a random subset of ``num_points`` when augmenting, else the first ``num_points`` of
    ``points.npy``; with ``sampling: fps`` their farthest point sample from point 0, the same points every
    time (e.g. for evaluation configs: ``dataset.val.sampling: fps``). Clouds written with
    ``--num-points`` by ``tools/import_ulip_shapenet.py`` are already in farthest-point order, so their
    first points are their farthest point sample.

    Args:
        data_dir: a rendered-views folder (see the module docstring).
        split: ``train`` or ``val`` (the per-category division of ``train.txt``) or ``test`` (``test.txt``).
        num_points: points per sample.
        use_normals: ``x`` is xyz + normals (needs (N,6) points) instead of xyz.
        rotation_axis: 0, 1 or 2: augmentation rotates about that axis (uniform angle); None: uniformly on
            SO(3). ``augment: False`` turns rotation off with the rest of the augmentation.
        augment: random view, points, rotation, translation and jitter; None: in ``train`` only.
        sampling: ``random`` (a random subset when augmenting, else the first points) or ``fps`` (farthest
            point sampling from point 0, the same points every time).
        views: views per object, the first ones (``view_00`` ...); None: ``meta.json``'s ``views``, or the
            view files of the first object.
        store: a similarity store folder (``tools/precompute_similarity.py --out``) made from this folder.
        val_fraction: the share of each category's ``train.txt`` objects in ``val``, in [0, 1).
        split_seed: seeds the train/val division.
        translate: each axis shifted by a uniform draw from [-translate, translate].
        jitter_sigma: per-point Gaussian jitter (standard deviation) ...
        jitter_clip: ... clipped to [-jitter_clip, jitter_clip].
        image_views: ``random``: a random view when augmenting, view 0 otherwise; an integer: always that view.
        load_images: read the view's PNG into ``img``; False needs ``store`` (``img_emb`` only).
        transform: an OpenPoints transform applied to ``{"pos": ...}`` (and ``"normals"`` with ``use_normals``)
            after the augmentation above.

    Attributes:
        classes: category names (``meta.json``).
        object_ids: the split's object ids.
        labels: (S,) int64 categories.
        num_views: views per object.
        store_fingerprint: the store's fingerprint, None without ``store``.
        sim_category, sim_row: (S,) int64 category index and row of each object in the store, None without it.

    Raises:
        ConfigError: an unknown or out-of-range setting.
        DataNotFoundError: ``data_dir``, a split list or the store is missing.
        BadInputError: a store made for other objects, a duplicate object, points without normals under
            ``use_normals``.
    """

    gravity_dim = 1  # the renders and ULIP's clouds are y-up

    def __init__(self, data_dir: str, split: str = "train", num_points: int = 1024, use_normals: bool = False,
                 rotation_axis: Optional[int] = 1, augment: Optional[bool] = None, sampling: str = "random",
                 views: Optional[int] = None, store: Optional[str] = None, val_fraction: float = 0.2,
                 split_seed: int = 0, translate: float = 0.1, jitter_sigma: float = 0.01, jitter_clip: float = 0.05,
                 image_views: Union[str, int] = "random", load_images: bool = True,
                 transform: Optional[Callable] = None) -> None:
        super().__init__()
        check_arguments(rotation_axis, augment, sampling, {})
        _check_settings(split, num_points, views, val_fraction, translate, jitter_sigma, jitter_clip, image_views,
                        load_images, store)
        self.root = Path(data_dir)
        items = self._read_items(split)
        if split != "test":
            held = holdout_mask([o for o, _ in items], [y for _, y in items], val_fraction, split_seed)
            items = [item for item, h in zip(items, held) if h == (split == "val")]
        self.split = split
        self.object_ids: List[str] = [o for o, _ in items]
        self.labels = np.array([y for _, y in items], dtype=np.int64)
        meta = self._read_meta()
        self.classes: List[str] = list(meta.get("classes", []))
        if views is not None and meta.get("views") and views > int(meta["views"]):
            raise ConfigError(f"dataset.common.views is {views} but the objects have {meta['views']} views "
                              f"({self.root / 'meta.json'}): set it to at most {meta['views']} or null.")
        self.num_views = views or int(meta.get("views") or count_views(self.root, self.object_ids, PREPARE))
        if isinstance(image_views, int) and image_views >= self.num_views:
            raise ConfigError(f"dataset.common.image_views is {image_views} but the objects have {self.num_views} "
                              f"views: set it to 0..{self.num_views - 1} or random.")
        self.num_points, self.use_normals, self.rotation_axis = num_points, use_normals, rotation_axis
        self.sampling, self.translate = sampling, translate
        self.jitter_sigma, self.jitter_clip, self.image_views = jitter_sigma, jitter_clip, image_views
        self.augment = split == "train" if augment is None else augment
        self.load_images, self.transform = load_images, transform
        self.store_fingerprint: Optional[str] = None
        self.sim_category: Optional[np.ndarray] = None  # (S,) int64 with a store
        self.sim_row: Optional[np.ndarray] = None
        if store is not None:
            self._attach_store(store)

    def _read_items(self, split: str) -> List:
        if not self.root.is_dir():
            raise DataNotFoundError(f"Triplet folder '{self.root}' does not exist: set dataset.common.data_dir to "
                                    f"a folder written by {PREPARE}.")
        stored = "test" if split == "test" else "train"
        if not (self.root / f"{stored}.txt").is_file():
            raise DataNotFoundError(f"'{self.root / (stored + '.txt')}' is missing: set dataset.common.data_dir to a "
                                    f"folder written by {PREPARE}, or rerun the tool into it (it resumes).")
        return read_split(self.root, stored)

    def _read_meta(self) -> Dict[str, Any]:
        path = self.root / "meta.json"
        if not path.is_file():
            return {}
        try:
            meta = json.loads(path.read_text())
        except ValueError as err:
            raise BadInputError(f"'{path}' is not JSON: rerun {PREPARE} into a new folder.") from err
        return meta if isinstance(meta, dict) else {}

    def _attach_store(self, store: str) -> None:
        """Rows, category indices and embeddings (kept in the stored precision) of this split's objects."""
        opened = SimilarityStore.open(store, key=STORE_KEY)
        stored_views = int(opened.manifest.get("views") or 0)
        if stored_views < self.num_views:
            raise ConfigError(f"The similarity store at '{store}' holds embeddings of {stored_views} views but the "
                              f"objects are read with {self.num_views}: set dataset.common.views to at most "
                              f"{stored_views}, or rerun tools/precompute_similarity.py with all views.")
        if len(self.classes) <= int(self.labels.max(initial=-1)):
            raise BadInputError(f"'{self.root / 'meta.json'}' names no class for label {int(self.labels.max())}, "
                                f"so objects cannot be found in the store: rerun {PREPARE} into a new folder.")
        names = [self.classes[y] for y in self.labels]
        self.sim_category, self.sim_row = opened.rows(self.object_ids, names)
        dtype = np.float16 if opened.manifest.get("dtype") == "float16" else np.float32
        self._embeddings = {int(c): opened.embeddings(opened.categories[int(c)]).astype(dtype)
                            for c in np.unique(self.sim_category)}
        self.store_fingerprint = opened.fingerprint

    def __len__(self) -> int:
        return len(self.object_ids)

    def _points(self, folder: Path) -> np.ndarray:
        path = folder / "points.npy"
        if not path.is_file():
            raise DataNotFoundError(f"'{path}' is missing: rerun {PREPARE} into dataset.common.data_dir.")
        points = np.load(path)
        if points.ndim != 2 or points.shape[1] < 3:
            raise BadInputError(f"'{path}' holds an array of shape {points.shape}, not (N, 3): write it again "
                                f"with {PREPARE}.")
        if self.use_normals and points.shape[1] < 6:
            raise BadInputError(f"'{path}' has no normals (shape {points.shape}): set dataset.common.use_normals to "
                                f"False or write the points as (N, 6) xyz + normals.")
        check_cloud(points, f"'{path}'")
        points = np.ascontiguousarray(points[:, :6 if self.use_normals else 3], dtype=np.float32)
        check_num_points(self.num_points, len(points), f"'{path}'")
        return sample_points(points, self.num_points, self.sampling, self.augment)

    def _augmented(self, xyz: np.ndarray, normals: Optional[np.ndarray]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Random rotation, translation and per-point clipped jitter (Sec. 4.1) of unit-sphere points; the
        normals only rotate."""
        rot = augmentation_rotation(self.rotation_axis)
        xyz = xyz @ rot.T + np.random.uniform(-self.translate, self.translate, size=(1, 3))
        noise = np.clip(self.jitter_sigma * np.random.randn(*xyz.shape), -self.jitter_clip, self.jitter_clip)
        return (xyz + noise).astype(np.float32), None if normals is None else (normals @ rot.T).astype(np.float32)

    def _view(self) -> int:
        if self.image_views != "random":
            return int(self.image_views)
        return int(np.random.randint(self.num_views)) if self.augment else 0

    def __getitem__(self, index: int) -> Dict[str, Any]:
        folder = self.root / self.object_ids[index]
        points = self._points(folder)
        xyz, normals = center_and_scale(points[:, :3])[0], (points[:, 3:6] if self.use_normals else None)
        if self.augment:
            xyz, normals = self._augmented(xyz, normals)
        data: Dict[str, Any] = {"pos": xyz} if normals is None else {"pos": xyz, "normals": normals}
        if self.transform is not None:
            data = self.transform(data)
        pos = torch.as_tensor(np.asarray(data["pos"]), dtype=torch.float32).contiguous()
        x = pos
        if normals is not None:
            x = torch.cat([pos, torch.as_tensor(np.asarray(data["normals"]), dtype=torch.float32)], 1).contiguous()
        height = pos[:, self.gravity_dim:self.gravity_dim + 1]
        v = self._view()
        sample = {"pos": pos, "x": x, "heights": height - height.min(), "y": torch.tensor(self.labels[index]),
                  "view_index": torch.tensor(v, dtype=torch.int64), "index": torch.tensor(index, dtype=torch.int64)}
        if self.load_images:
            path = folder / f"view_{v:02d}.png"
            if not path.exists():
                raise DataNotFoundError(f"'{path}' is missing: rerun {PREPARE} into dataset.common.data_dir, or set "
                                        f"dataset.common.views to the views every object has.")
            image = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
            sample["img"] = torch.from_numpy(image).permute(2, 0, 1).contiguous()
        if self.store_fingerprint is not None:
            category, row = int(self.sim_category[index]), int(self.sim_row[index])
            sample["img_emb"] = torch.from_numpy(self._embeddings[category][row, v].astype(np.float32))
            sample["sim_category"] = torch.tensor(category, dtype=torch.int64)
            sample["sim_row"] = torch.tensor(row, dtype=torch.int64)
        return sample


def _check_settings(split: Any, num_points: Any, views: Any, val_fraction: Any, translate: Any, jitter_sigma: Any,
                    jitter_clip: Any, image_views: Any, load_images: Any, store: Any) -> None:
    """Raise :class:`ConfigError` for a value :class:`ClipTriplets` does not take (the settings it shares with
    :class:`~.rendered_views.RenderedViews` are checked by its ``check_arguments``)."""
    if split not in SPLITS:
        raise ConfigError(f"Unknown ClipTriplets split '{split}': set dataset.<train|val|test>.split to train, val "
                          f"or test.")
    if not isinstance(num_points, int) or num_points < 1:
        raise ConfigError(f"dataset.common.num_points is {num_points!r}: set it to a positive integer.")
    if views is not None and (not isinstance(views, int) or views < 1):
        raise ConfigError(f"dataset.common.views is {views!r}: set it to a positive integer or null (all views).")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"dataset.common.val_fraction is {val_fraction}: set it to a share in [0, 1), e.g. 0.2.")
    if split == "val" and val_fraction == 0:
        raise ConfigError("The val split is empty with dataset.common.val_fraction 0: set it to a share in (0, 1), "
                          "e.g. 0.2.")
    for name, value in (("translate", translate), ("jitter_sigma", jitter_sigma), ("jitter_clip", jitter_clip)):
        if not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"dataset.common.{name} is {value!r}: set it to a number >= 0.")
    if image_views != "random" and (isinstance(image_views, bool) or not isinstance(image_views, int)
                                    or image_views < 0):
        raise ConfigError(f"dataset.common.image_views is {image_views!r}: set it to random or a view index >= 0.")
    if not load_images and store is None:
        raise ConfigError("dataset.common.load_images is False but no dataset.common.store gives img_emb: set "
                          "store to a tools/precompute_similarity.py folder or load_images to True.")
