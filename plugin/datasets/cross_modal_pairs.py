"""Cross-MoST's paired samples: one object's image and points, each in a weak and a strong augmentation.

Cross-modal self-training (Cross-MoST, Dharmasiri et al.) feeds a teacher the weakly augmented image and points
and a student the strongly augmented ones. :class:`CrossModalPairs` reads the views of a rendered-views folder
(the format of :mod:`.rendered_views`; ``cameras.npz`` is not needed); :class:`DepthPairs` renders them from
ScanObjectNN clouds with :class:`~plugin.render.depth_renderer.DepthRenderer`. Both give the same samples:

- training (``augment``): ``img_weak``, ``img_strong`` (3,S,S) in [0, 1], two augmentations of ONE random view;
  ``pos_weak``, ``pos_strong`` (N,3), two augmentations of one point subset, centred and scaled into the unit
  sphere first; ``y`` (int64, for logging) and ``index`` (int64);
- evaluation: ``img`` (3,S,S) view 0 resized to S; ``img_views`` (V,3,S,S) the first ``eval_views`` views
  (all by default) resized to S; ``pos`` (N,3) fixed points, centred and in the unit sphere; ``y``, ``index``.

Images are unnormalised: the model normalises them for its own backbone. The augmentations
(:class:`PairAugmentation`) draw from NumPy's, torch's and Python's global generators, which the runner seeds.
"""
import inspect
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import timm.data
import torch
from openpoints.dataset.build import DATASETS
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from ..errors import BadInputError, ConfigError, DataNotFoundError
from ..render.depth_renderer import VIEW_SETS, DepthRenderer, render_depth
from .rendered_views import (PREPARE, SAMPLINGS, augmentation_rotation, center_and_scale, count_views, read_split,
                             rotation_about, sample_points)
from .modelnet40 import MODELNET10_CLASSES
from .scanobjectnn import SCANOBJECTNN_CLASSES, ScanObjectNN
from .validation import check_cloud, resolve_split

__all__ = ["CrossModalPairs", "DepthPairs", "PairAugmentation", "random_point_dropout", "strong_points",
           "weak_points"]

UP_AXES = (0, 1, 2)
SUBSETS = (None, "modelnet40", "modelnet10")
RAND_AUGMENT = "rand-m9-mstd0.5-inc1-mmax9"  # the release's, magnitude capped at 9 (see PairAugmentation)


def weak_points(xyz: np.ndarray, scale: Sequence[float], sigma: float, clip: float) -> np.ndarray:
    """The weak point augmentation: an isotropic scale and PointNet's small rotation perturbation.

    Args:
        xyz: (N, 3) points.
        scale: the factor's uniform range ``(low, high)``.
        sigma: standard deviation of the rotation angle about each axis (radians) ...
        clip: ... clipped to [-clip, clip].
    """
    angles = np.clip(sigma * np.random.randn(3), -clip, clip)
    rot = rotation_about(2, angles[2]) @ rotation_about(1, angles[1]) @ rotation_about(0, angles[0])
    return (xyz @ rot.T * np.random.uniform(*scale)).astype(np.float32)


def strong_points(xyz: np.ndarray, scale: Sequence[float], up_axis: int, translate: float, jitter_sigma: float,
                  jitter_clip: float, max_dropout: float) -> np.ndarray:
    """The strong point augmentation: a random rotation about the up axis, an isotropic scale, a translation,
    clipped per-point jitter and :func:`random_point_dropout`.

    Args:
        xyz: (N, 3) points.
        scale: the factor's uniform range ``(low, high)``.
        up_axis: the coordinate the rotation turns about (0: x, 1: y, 2: z).
        translate: each axis shifted by a uniform draw from [-translate, translate].
        jitter_sigma: per-point Gaussian jitter (standard deviation) ...
        jitter_clip: ... clipped to [-jitter_clip, jitter_clip].
        max_dropout: the largest dropout ratio.
    """
    xyz = xyz @ augmentation_rotation(up_axis).T * np.random.uniform(*scale)
    xyz = xyz + np.random.uniform(-translate, translate, size=(1, 3))
    xyz = xyz + np.clip(jitter_sigma * np.random.randn(*xyz.shape), -jitter_clip, jitter_clip)
    return random_point_dropout(xyz.astype(np.float32), max_dropout)


def random_point_dropout(xyz: np.ndarray, max_ratio: float) -> np.ndarray:
    """PointNet++'s input dropout: a ratio drawn from [0, max_ratio), each point dropped with that probability
    and replaced by the first point (the count stays N).

    Args:
        xyz: (N, C) points; not modified.
        max_ratio: the largest dropout ratio, in [0, 1).
    """
    ratio = np.random.random() * max_ratio
    dropped = np.flatnonzero(np.random.random(len(xyz)) <= ratio)
    xyz = xyz.copy()
    xyz[dropped] = xyz[0]
    return xyz


def _check_range(name: str, value: Any, upper: float = float("inf")) -> Tuple[float, float]:
    """``value`` as ``(low, high)`` with ``0 < low <= high <= upper``, else :class:`ConfigError` naming the key."""
    if isinstance(value, (list, tuple)) and len(value) == 2 \
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) \
            and 0 < value[0] <= value[1] <= upper:
        return float(value[0]), float(value[1])
    bound = "" if upper == float("inf") else f" <= {upper:g}"
    raise ConfigError(f"dataset.common.{name} is {value!r}: set it to a pair [low, high] with 0 < low <= high{bound}.")


def _check_number(name: str, value: Any, upper: Optional[float] = None, closed: bool = True) -> float:
    """``value`` as a number in [0, upper] (or [0, upper) unless ``closed``), else :class:`ConfigError`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 \
            and (upper is None or value < upper or (closed and value == upper)):
        return float(value)
    bound = "" if upper is None else f" and {'<=' if closed else '<'} {upper:g}"
    raise ConfigError(f"dataset.common.{name} is {value!r}: set it to a number >= 0{bound}.")


def _check_count(name: str, value: Any, none_means: str = "") -> None:
    """Raise :class:`ConfigError` unless ``value`` is a positive integer (or None when ``none_means`` says what)."""
    if value is None and none_means:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        alternative = f" or null ({none_means})" if none_means else ""
        raise ConfigError(f"dataset.common.{name} is {value!r}: set it to a positive integer{alternative}.")


def _check_common(cls: type, num_points: Any, augment: Any, sampling: Any, eval_views: Any,
                  unknown: Dict[str, Any]) -> None:
    """Raise :class:`ConfigError` for an unknown key of ``cls`` or a bad value of the settings both classes share."""
    if unknown:
        valid = [name for name in inspect.signature(cls.__init__).parameters if name not in ("self", "kwargs")]
        raise ConfigError(f"Unknown argument(s) {', '.join(sorted(unknown))} of {cls.__name__}: use "
                          f"{', '.join(valid)} under dataset.common.")
    _check_count("num_points", num_points)
    _check_count("eval_views", eval_views, "all views")
    if augment is not None and not isinstance(augment, bool):
        raise ConfigError(f"dataset.common.augment is {augment!r}: set it to True, False or null (augment the "
                          f"train split only).")
    if sampling not in SAMPLINGS:
        raise ConfigError(f"dataset.common.sampling is {sampling!r}: set it to {' or '.join(SAMPLINGS)}.")


class PairAugmentation:
    """Cross-MoST's weak and strong augmentations of an image and of a point cloud, and the evaluation resize.

    - weak image: resize to ``int(S / crop_pct)``, random crop S;
    - strong image: timm's training transform (random resized crop of area ``crop_scale``, horizontal flip,
      RandAugment ``rand_augment``) with mean 0 and std 1, so it stays in [0, 1];
    - evaluation image: resize to S x S (bilinear, no crop);
    - weak and strong points: :func:`weak_points` and :func:`strong_points`.

    Args:
        image_size: side S of the square output images.
        up_axis: the coordinate the strong rotation turns about.
        weak_scale: the weak isotropic scale's uniform range.
        rotation_sigma: the weak rotation angles' standard deviation (radians) ...
        rotation_clip: ... clipped to [-rotation_clip, rotation_clip].
        strong_scale: the strong isotropic scale's uniform range.
        translate: the strong translation's bound per axis.
        jitter_sigma: the strong per-point jitter's standard deviation ...
        jitter_clip: ... clipped to [-jitter_clip, jitter_clip].
        max_dropout: the strong input dropout's largest ratio, in [0, 1).
        crop_pct: the weak crop's share of the resized side, in (0, 1].
        crop_scale: the strong crop's area range (shares of the image), within (0, 1].
        hflip: the strong horizontal flip's probability.
        rand_augment: timm's RandAugment config string: the release's ``rand-m9-mstd0.5-inc1`` with the magnitude
            capped at 9 (``mmax9``): at 10 timm's PosterizeIncreasing keeps 0 bits, which Pillow >= 10 refuses.

    Raises:
        ConfigError: a value out of range, named as its ``dataset.common`` key.
    """

    def __init__(self, image_size: int = 224, up_axis: int = 1, weak_scale: Sequence[float] = (0.9, 1.1),
                 rotation_sigma: float = 0.06, rotation_clip: float = 0.18, strong_scale: Sequence[float] = (0.5, 2.0),
                 translate: float = 0.2, jitter_sigma: float = 0.01, jitter_clip: float = 0.05,
                 max_dropout: float = 0.875, crop_pct: float = 0.875, crop_scale: Sequence[float] = (0.3, 1.0),
                 hflip: float = 0.5, rand_augment: str = RAND_AUGMENT) -> None:
        _check_count("image_size", image_size)
        if up_axis not in UP_AXES or isinstance(up_axis, bool):
            raise ConfigError(f"dataset.common.up_axis is {up_axis!r}: set it to 0, 1 or 2 (the coordinate "
                              f"pointing up).")
        self.image_size, self.up_axis = image_size, up_axis
        self.weak_scale = _check_range("weak_scale", weak_scale)
        self.strong_scale = _check_range("strong_scale", strong_scale)
        self.rotation_sigma = _check_number("rotation_sigma", rotation_sigma)
        self.rotation_clip = _check_number("rotation_clip", rotation_clip)
        self.translate = _check_number("translate", translate)
        self.jitter_sigma = _check_number("jitter_sigma", jitter_sigma)
        self.jitter_clip = _check_number("jitter_clip", jitter_clip)
        self.max_dropout = _check_number("max_dropout", max_dropout, 1.0, closed=False)
        crop_pct = _check_number("crop_pct", crop_pct, 1.0)
        if crop_pct == 0:
            raise ConfigError("dataset.common.crop_pct is 0: set it to the crop's share of the side, in (0, 1].")
        hflip = _check_number("hflip", hflip, 1.0)
        crop_scale = _check_range("crop_scale", crop_scale, 1.0)
        bad_augment = ConfigError(f"dataset.common.rand_augment is {rand_augment!r}: set it to a timm RandAugment "
                                  f"string such as {RAND_AUGMENT}.")
        if not isinstance(rand_augment, str) or rand_augment.split("-")[0] != "rand":
            raise bad_augment
        try:  # timm parses the RandAugment string here; mean 0 and std 1 keep the images in [0, 1]
            self.strong_image = timm.data.create_transform(
                image_size, is_training=True, scale=crop_scale, hflip=hflip, auto_augment=rand_augment,
                mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), re_prob=0.0)
        except (AssertionError, KeyError, ValueError) as err:
            raise bad_augment from err
        bilinear = transforms.InterpolationMode.BILINEAR
        self.weak_image = transforms.Compose([transforms.Resize(int(image_size / crop_pct), interpolation=bilinear),
                                              transforms.RandomCrop(image_size), transforms.ToTensor()])
        self.eval_image = transforms.Compose([transforms.Resize((image_size, image_size), interpolation=bilinear),
                                              transforms.ToTensor()])

    def weak_points(self, xyz: np.ndarray) -> torch.Tensor:
        """(N, 3) float32 weak augmentation of ``xyz`` (N, 3)."""
        return torch.from_numpy(weak_points(xyz, self.weak_scale, self.rotation_sigma, self.rotation_clip))

    def strong_points(self, xyz: np.ndarray) -> torch.Tensor:
        """(N, 3) float32 strong augmentation of ``xyz`` (N, 3)."""
        return torch.from_numpy(strong_points(xyz, self.strong_scale, self.up_axis, self.translate,
                                              self.jitter_sigma, self.jitter_clip, self.max_dropout))


class _PairSamples(Dataset):
    """The samples both pair datasets give; a subclass supplies the points and the views of an object.

    Subclasses set ``labels``, ``augment``, ``num_views``, ``eval_views`` and ``augmentation``.
    """

    labels: np.ndarray
    augment: bool
    num_views: int
    eval_views: int
    augmentation: PairAugmentation

    def _points(self, index: int) -> np.ndarray:
        """(N, 3) float32 points of object ``index``: a random subset when augmenting, else fixed ones."""
        raise NotImplementedError

    def _views(self, index: int, xyz: np.ndarray, views: Sequence[int]) -> List[Image.Image]:
        """RGB images of object ``index`` from ``views``; ``xyz`` its (N, 3) centred, unit-sphere points."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        xyz = center_and_scale(self._points(index))[0]
        tags = {"y": torch.tensor(self.labels[index], dtype=torch.int64),
                "index": torch.tensor(index, dtype=torch.int64)}
        aug = self.augmentation
        if self.augment:
            image = self._views(index, xyz, [int(np.random.randint(self.num_views))])[0]  # one view for both
            return {"img_weak": aug.weak_image(image), "img_strong": aug.strong_image(image),
                    "pos_weak": aug.weak_points(xyz), "pos_strong": aug.strong_points(xyz), **tags}
        images = torch.stack([aug.eval_image(image) for image in self._views(index, xyz, range(self.eval_views))])
        return {"img": images[0], "img_views": images, "pos": torch.from_numpy(xyz.astype(np.float32)), **tags}

    def _check_eval_views(self, eval_views: Optional[int]) -> int:
        """``eval_views``, or all views for None; :class:`ConfigError` when the objects have fewer."""
        if eval_views is not None and eval_views > self.num_views:
            raise ConfigError(f"dataset.common.eval_views is {eval_views} but the objects have {self.num_views} "
                              f"views: set it to at most {self.num_views} or null (all views).")
        return self.num_views if eval_views is None else eval_views


@DATASETS.register_module()
class CrossModalPairs(_PairSamples):
    """Cross-MoST samples of a rendered-views folder (:mod:`.rendered_views`): its views and its points.

    Training samples pair two augmentations of one random view (``img_weak``, ``img_strong``) with two
    augmentations of one random point subset (``pos_weak``, ``pos_strong``); evaluation samples hold view 0
    (``img``), the first ``eval_views`` views (``img_views``) and fixed points (``pos``), see the module docstring.

    Args:
        data_dir: a rendered-views folder (``meta.json``, ``train.txt``/``test.txt``, ``<object>/points.npy``
            and ``view_XX.png``).
        split: ``train``, ``val`` (reads ``test``) or ``test``.
        num_points: points per sample.
        image_size: side S of the square output images.
        augment: training samples (weak and strong pairs); None: in ``train`` only.
        sampling: ``random`` (a random subset when augmenting, else the first points) or ``fps`` (farthest point
            sampling from point 0, the same points every time).
        eval_views: views in ``img_views``, the first ones; None: all (``meta.json``'s ``views``, or the view
            files of the first object).
        up_axis: the coordinate pointing up (the strong rotation's axis); the renders are y-up.
        subset: ``modelnet10``: only the objects of ModelNet10's classes, relabelled in its label order (views of
            ModelNet40 serve ModelNet10); None or ``modelnet40``: every object.
        weak_scale, rotation_sigma, rotation_clip, strong_scale, translate, jitter_sigma, jitter_clip, max_dropout,
            crop_pct, crop_scale, hflip, rand_augment: the augmentations (:class:`PairAugmentation`).
        transform: unused (the augmentations above are built in); accepted for configs.

    Attributes:
        classes: category names (``meta.json``, or ModelNet10's with ``subset``).
        labels: (S,) int64 categories.
        num_views: views per object.

    Raises:
        ConfigError: an unknown argument or a value out of range.
        DataNotFoundError: ``data_dir``, its split list or an object's file is missing.
        BadInputError: an object's points are empty, not finite or fewer than ``num_points``.
    """

    def __init__(self, data_dir: str, split: str = "train", num_points: int = 1024, image_size: int = 224,
                 augment: Optional[bool] = None, sampling: str = "random", eval_views: Optional[int] = None,
                 up_axis: int = 1, subset: Optional[str] = None, weak_scale: Sequence[float] = (0.9, 1.1),
                 rotation_sigma: float = 0.06, rotation_clip: float = 0.18, strong_scale: Sequence[float] = (0.5, 2.0),
                 translate: float = 0.2, jitter_sigma: float = 0.01, jitter_clip: float = 0.05,
                 max_dropout: float = 0.875, crop_pct: float = 0.875, crop_scale: Sequence[float] = (0.3, 1.0),
                 hflip: float = 0.5, rand_augment: str = RAND_AUGMENT, transform: Any = None, **kwargs: Any) -> None:
        super().__init__()
        _check_common(type(self), num_points, augment, sampling, eval_views, kwargs)
        self.augmentation = PairAugmentation(image_size, up_axis, weak_scale, rotation_sigma, rotation_clip,
                                             strong_scale, translate, jitter_sigma, jitter_clip, max_dropout,
                                             crop_pct, crop_scale, hflip, rand_augment)
        self.root = Path(data_dir)
        if not self.root.is_dir():
            raise DataNotFoundError(f"Rendered views not found at '{self.root}': set dataset.common.data_dir to a "
                                    f"folder written by tools/render_views.py (see `{PREPARE}`).")
        self.split = resolve_split(split, "CrossModalPairs")
        items = read_split(self.root, self.split)
        self.object_ids = [object_id for object_id, _ in items]
        self.labels = np.array([label for _, label in items], dtype=np.int64)
        meta_path = self.root / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        self.classes: List[str] = list(meta.get("classes", []))
        if subset not in SUBSETS:
            raise ConfigError(f"dataset.common.subset is {subset!r}: set it to modelnet10 (ModelNet10's classes of "
                              f"ModelNet40 views), modelnet40 or null.")
        if subset == "modelnet10":
            self._keep_modelnet10()
        self.num_views = int(meta.get("views") or count_views(self.root, self.object_ids,
                                                              f"tools/render_views.py (see `{PREPARE}`)"))
        self.eval_views = self._check_eval_views(eval_views)
        self.num_points, self.sampling = num_points, sampling
        self.augment = self.split == "train" if augment is None else augment

    def _keep_modelnet10(self) -> None:
        """Keep the objects of ModelNet10's classes, relabelled in ModelNet10's label order."""
        missing = [name for name in MODELNET10_CLASSES if name not in self.classes]
        if missing:
            raise ConfigError(f"dataset.common.subset=modelnet10 needs ModelNet40 views, but meta.json of "
                              f"{self.root} lacks {', '.join(missing)}: render ModelNet40 or drop the subset.")
        new_label = {self.classes.index(name): i for i, name in enumerate(MODELNET10_CLASSES)}
        keep = [i for i, label in enumerate(self.labels) if int(label) in new_label]
        self.object_ids = [self.object_ids[i] for i in keep]
        self.labels = np.array([new_label[int(self.labels[i])] for i in keep], dtype=np.int64)
        self.classes = list(MODELNET10_CLASSES)

    def _points(self, index: int) -> np.ndarray:
        path = self.root / self.object_ids[index] / "points.npy"
        if not path.is_file():
            raise DataNotFoundError(f"'{path}' is missing: rerun tools/render_views.py into dataset.common.data_dir, "
                                    f"it resumes.")
        points = np.load(path)
        if points.ndim != 2 or points.shape[1] < 3:
            raise BadInputError(f"'{path}' holds an array of shape {points.shape}, not (N, 3): re-render that "
                                f"object with tools/render_views.py.")
        check_cloud(points, f"'{path}'")
        if len(points) < self.num_points:
            raise BadInputError(f"'{path}' holds {len(points)} points: set dataset.common.num_points to at most "
                                f"that, or re-render the object with more points.")
        xyz = np.ascontiguousarray(points[:, :3], dtype=np.float32)
        return sample_points(xyz, self.num_points, self.sampling, self.augment)

    def _views(self, index: int, xyz: np.ndarray, views: Sequence[int]) -> List[Image.Image]:
        images = []
        for v in views:
            path = self.root / self.object_ids[index] / f"view_{v:02d}.png"
            if not path.is_file():
                raise DataNotFoundError(f"'{path}' is missing: rerun tools/render_views.py into "
                                        f"dataset.common.data_dir, or set dataset.common.eval_views to the views "
                                        f"every object has.")
            images.append(Image.open(path).convert("RGB"))
        return images


@DATASETS.register_module()
class DepthPairs(_PairSamples):
    """Cross-MoST samples of ScanObjectNN: its clouds and their depth images, rendered on the fly.

    Each sample's views are depth images of its centred, unit-sphere points (the points of ``pos``, before
    their augmentation) from the cameras of ``views``, rendered by the project's
    :class:`~plugin.render.depth_renderer.DepthRenderer` (near points bright on black, grey in [0, 1],
    3 channels). A training sample renders only its one random view; an evaluation sample renders its
    ``eval_views``. Samples and augmentations are :class:`CrossModalPairs`' (see the module docstring).

    Args:
        data_dir: the ScanObjectNN ``h5_files`` folder (holding ``main_split`` and ``main_split_nobg``).
        split: ``train``, ``val`` (reads the test file) or ``test``.
        variant: ``OBJ_BG``, ``OBJ_ONLY`` or ``PB_T50_RS``.
        num_points: points per sample (and per rendered image).
        image_size: side S of the rendered and of the output images.
        augment: training samples (weak and strong pairs); None: in ``train`` only.
        sampling: the fixed points of evaluation: ``fps`` (farthest point sampling, cached) or ``random``
            (the first points); augmenting draws a random subset either way.
        eval_views: views in ``img_views``, the first ones of ``views``; None: all.
        up_axis: the coordinate pointing up (the strong rotation's axis); ScanObjectNN and the cameras are y-up.
        views: the camera set: ``orthogonal6`` or ``orthogonal_corner10`` (CLIP2Point's ten views).
        dilation: each point covers a dilation x dilation pixel square.
        cache_fps: also cache the evaluation FPS on disk (:class:`~.scanobjectnn.ScanObjectNN`).
        weak_scale, rotation_sigma, rotation_clip, strong_scale, translate, jitter_sigma, jitter_clip, max_dropout,
            crop_pct, crop_scale, hflip, rand_augment: the augmentations (:class:`PairAugmentation`).
        transform: unused (the augmentations above are built in); accepted for configs.

    Attributes:
        classes: ScanObjectNN's 15 category names.
        labels: (S,) int64 categories.
        num_views: cameras in ``views``.

    Raises:
        ConfigError: an unknown argument, variant or a value out of range.
        DataNotFoundError: the h5 file of ``variant`` and ``split`` is missing.
        BadInputError: a cloud is empty or not finite.
    """

    classes = SCANOBJECTNN_CLASSES

    def __init__(self, data_dir: str, split: str = "train", variant: str = "PB_T50_RS", num_points: int = 1024,
                 image_size: int = 224, augment: Optional[bool] = None, sampling: str = "fps",
                 eval_views: Optional[int] = None, up_axis: int = 1, views: str = "orthogonal6", dilation: int = 3,
                 cache_fps: bool = True, weak_scale: Sequence[float] = (0.9, 1.1), rotation_sigma: float = 0.06,
                 rotation_clip: float = 0.18, strong_scale: Sequence[float] = (0.5, 2.0), translate: float = 0.2,
                 jitter_sigma: float = 0.01, jitter_clip: float = 0.05, max_dropout: float = 0.875,
                 crop_pct: float = 0.875, crop_scale: Sequence[float] = (0.3, 1.0), hflip: float = 0.5,
                 rand_augment: str = RAND_AUGMENT, transform: Any = None, **kwargs: Any) -> None:
        super().__init__()
        _check_common(type(self), num_points, augment, sampling, eval_views, kwargs)
        if views not in VIEW_SETS:
            raise ConfigError(f"dataset.common.views is {views!r}: set it to {' or '.join(VIEW_SETS)}.")
        _check_count("dilation", dilation)
        self.augmentation = PairAugmentation(image_size, up_axis, weak_scale, rotation_sigma, rotation_clip,
                                             strong_scale, translate, jitter_sigma, jitter_clip, max_dropout,
                                             crop_pct, crop_scale, hflip, rand_augment)
        self.split = resolve_split(split, "DepthPairs")
        self.augment = self.split == "train" if augment is None else augment
        self.clouds = ScanObjectNN(data_dir, split=split, variant=variant, num_points=num_points,
                                   uniform_sample=sampling == "fps", cache_fps=cache_fps, augment=self.augment)
        self.labels = self.clouds.labels
        # grey levels in [0, 1]: no standardisation (mean 0, std 1)
        self.renderer = DepthRenderer(image_size, dilation, views=views, encoding="near_bright",
                                      mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        self.num_views = self.renderer.num_views
        self.eval_views = self._check_eval_views(eval_views)

    def _points(self, index: int) -> np.ndarray:
        return np.asarray(self.clouds[index]["pos"], dtype=np.float32)

    def _views(self, index: int, xyz: np.ndarray, views: Sequence[int]) -> List[Image.Image]:
        chosen = torch.as_tensor(list(views), dtype=torch.int64)
        renderer = self.renderer
        points = torch.from_numpy(np.ascontiguousarray(xyz, dtype=np.float32))[None]
        depth = render_depth(points, renderer.view[chosen], renderer.proj[chosen], renderer.image_size,
                             renderer.dilation, renderer.reduction).depth[0]  # (V, S, S)
        grey = renderer.to_image(depth).clamp(0, 1).mul(255).round().to(torch.uint8)  # (V, 3, S, S)
        return [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in grey]
