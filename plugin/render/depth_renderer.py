"""CLIP2Point's depth renderer: point clouds to CLIP-ready depth images.

Points are projected with :func:`.cameras.project` (convention there) to continuous pixel
coordinates ``col = u * W``, ``row = v * H``; each point covers a ``dilation x dilation`` pixel
square (columns ``floor(col) - (R-1)//2 ... floor(col) + R//2``, rows likewise). A pixel's depth
is either the minimum over its covering points (``reduction="min"``, CLIP2Point Eqs. 9-10) or
PointCLIP's inverse-depth-weighted mean (``reduction="weighted"``, CLIP2Point Eq. 8). Both run
in the native ``pointnet2_ops`` kernels (``rasterize_points`` / ``splat_weighted_depth``).

:func:`depth_to_image` turns depth maps into normalised 3-channel images for CLIP's image
encoder; :class:`DepthRenderer` bundles both behind a config (``render:`` YAML keys).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import BadInputError
from ..ops import ops
from .cameras import project
from .view_sets import (
    DEFAULT_DISTANCE,
    DEFAULT_FOV_DEG,
    orthogonal_and_corner_views,
    orthogonal_views,
    scale_camera_distance,
)

try:  # CLIP's image statistics, from open_clip when it is installed
    from open_clip.constants import OPENAI_DATASET_MEAN as CLIP_MEAN
    from open_clip.constants import OPENAI_DATASET_STD as CLIP_STD
except ImportError:  # pragma: no cover - open_clip is a dependency; these are its values
    CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
    CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DepthMaps",
    "CLIP2POINT_ENCODING",
    "DepthRenderer",
    "ENCODINGS",
    "REDUCTIONS",
    "VIEW_SETS",
    "depth_to_image",
    "project_to_pixels",
    "render_depth",
]

REDUCTIONS = ("min", "weighted")
NORMALISATIONS = ("per_image", "min_over_max", "none")
RELEASE_GREY_SCALE = 200.0 / 255.0  # top grey level of the CLIP2Point release's depth maps
# Named depth-map encodings: the (normalise, near_bright, background) each one sets.
ENCODINGS = {
    # the CLIP2Point authors' release: near points dark, g = (d - d_min) / d_max * 200/255, white background
    "clip2point_release": {"normalise": "min_over_max", "near_bright": False, "background": 1.0},
    # near points bright, g = 1 - (d - d_min) / (d_max - d_min), black background
    "near_bright": {"normalise": "per_image", "near_bright": True, "background": 0.0},
}
CLIP2POINT_ENCODING = "clip2point_release"  # the encoding CLIP2Point's model and modes default to
VIEW_SETS = {"orthogonal6": orthogonal_views, "orthogonal_corner10": orthogonal_and_corner_views}
_RANGE_EPS = 1e-12  # floor of (far - near) in the per-image normalisation


class DepthMaps(NamedTuple):
    """Rendered depth maps.

    Args:
        depth: (B, V, H, W) float32 camera depth ``-z_camera`` per pixel (minimum or weighted
            mean of the covering points), ``+inf`` where no point covers the pixel.
        index: (B, V, H, W) int64 index into N of the nearest covering point (ties to the
            lower index), -1 where no point covers the pixel.
    """

    depth: Tensor
    index: Tensor


def _choice(name: str, value: str, valid: Sequence[str]) -> str:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; use one of {', '.join(map(repr, valid))}.")
    return value


def _positive_int(name: str, value: object) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"`{name}` must be an int, got {type(value).__name__}; pass an integer.") from None
    if number < 1:
        raise ValueError(f"`{name}` must be >= 1, got {number}; pass a positive integer.")
    return number


def _cameras_per_cloud(matrix: Tensor, name: str, batch: int) -> Tensor:
    """(V, 4, 4) or (B, V, 4, 4) cameras -> (B, V, 4, 4) (a broadcast view, no copy)."""
    if matrix.dim() == 3 and matrix.shape[-2:] == (4, 4):
        return matrix.unsqueeze(0).expand(batch, -1, -1, -1)
    if matrix.dim() == 4 and matrix.shape[-2:] == (4, 4) and matrix.shape[0] == batch:
        return matrix
    raise BadInputError(
        f"`{name}` must have shape (V, 4, 4) or (B={batch}, V, 4, 4), got {tuple(matrix.shape)}; "
        "pass one camera set shared by all clouds or one per cloud."
    )


def _check_points(points: object) -> Tensor:
    if not isinstance(points, Tensor) or points.dim() != 3 or points.shape[-1] != 3:
        shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
        raise BadInputError(f"`points` must be a (B, N, 3) tensor, got {shape}; reshape it.")
    if not points.is_floating_point():
        raise BadInputError(f"`points` must be floating point, got {points.dtype}; call .float() on it.")
    return points


def project_to_pixels(points: Tensor, view: Tensor, proj: Tensor, image_size: int = 224) -> Tensor:
    """Continuous pixel coordinates and depth of every point in every camera.

    Args:
        points: (B, N, 3) world coordinates (floating point).
        view: (V, 4, 4) world-to-camera matrices shared by all clouds, or (B, V, 4, 4).
        proj: (V, 4, 4) or (B, V, 4, 4) camera-to-clip matrices (aspect 1: square images).
        image_size: side H = W of the images in pixels.

    Returns:
        (B, V, N, 3) ``[col, row, depth]`` with ``col = u * W``, ``row = v * H`` for the image
        coordinates u, v of :func:`.cameras.project`, so a point lies in pixel
        ``(floor(col), floor(row))``; the layout the splatting ops take.
    """
    points = _check_points(points)
    size = _positive_int("image_size", image_size)
    b = points.shape[0]
    view = _cameras_per_cloud(view, "view", b)
    proj = _cameras_per_cloud(proj, "proj", b)
    if view.shape[1] != proj.shape[1]:
        raise BadInputError(
            f"`view` has {view.shape[1]} cameras but `proj` has {proj.shape[1]}; pass one "
            "projection per view."
        )
    uv, depth = project(points.unsqueeze(1), view.to(points), proj.to(points))  # (B, V, N, .)
    return torch.stack([uv[..., 0] * size, uv[..., 1] * size, depth], dim=-1)


def render_depth(
    points: Tensor, view: Tensor, proj: Tensor, image_size: int = 224, dilation: int = 1,
    reduction: str = "min",
) -> DepthMaps:
    """Depth maps of every cloud from every camera (CLIP2Point Eqs. 8-10).

    All B x V images are rendered in one call of the native op (cloud-major, flattened into
    its batch dimension). Points with non-finite coordinates, or at depth <= 0 (behind the
    camera), draw nothing.

    Args:
        points: (B, N, 3) world coordinates (floating point).
        view: (V, 4, 4) world-to-camera matrices shared by all clouds, or (B, V, 4, 4).
        proj: (V, 4, 4) or (B, V, 4, 4) camera-to-clip matrices (aspect 1: square images).
        image_size: side H = W of the images in pixels.
        dilation: CLIP2Point's dilation rate R; each point covers an R x R pixel square.
        reduction: ``"min"``: the nearest covering point's depth (Eqs. 9-10);
            ``"weighted"``: ``sum_i w_i z_i / sum_i w_i`` with ``w_i = 1 / z_i`` over the
            covering points (PointCLIP, Eq. 8).

    Returns:
        :class:`DepthMaps` with (B, V, H, W) ``depth`` and ``index``.
    """
    size = _positive_int("image_size", image_size)
    footprint = _positive_int("dilation", dilation)
    _choice("reduction", reduction, REDUCTIONS)
    pixels = project_to_pixels(points, view, proj, size)
    b, v, n, _ = pixels.shape
    if b * v == 0 or n == 0:  # nothing to draw: every pixel is empty
        depth = pixels.new_full((b, v, size, size), float("inf"), dtype=torch.float32)
        return DepthMaps(depth, torch.full_like(depth, -1, dtype=torch.int64))
    # CLIP2Point Eqs. 9-10 (min depth over R x R footprints) or Eq. 8 (w_i = 1 / z_i weighted mean).
    splat = ops.rasterize_points if reduction == "min" else ops.splat_weighted_depth
    value, index = splat(pixels.view(b * v, n, 3), size, size, footprint)
    return DepthMaps(value.view(b, v, size, size), index.view(b, v, size, size))


def depth_to_image(
    depth: Tensor, background: float = 0.0, normalise: str = "per_image", near_bright: bool = True,
    mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD,
) -> Tensor:
    """CLIP-ready 3-channel images from depth maps.

    Covered pixels (finite depth) get a grey level ``g``, with d_min and d_max over the image's
    covered pixels:

    - ``normalise="per_image"``: ``g = (d - d_min) / max(d_max - d_min, 1e-12)``, in [0, 1];
      with ``near_bright`` it is ``1 - g`` (nearest pixel 1, farthest 0; a single depth gives 1).
    - ``normalise="min_over_max"``: ``g = (d - d_min) / d_max * 200/255``, the CLIP2Point
      release's scaling (nearest pixel 0, farthest ``(1 - d_min/d_max) * 200/255``); it draws
      near points dark, so it needs ``near_bright=False``. (The release takes its minimum after
      setting empty pixels to 1, so there d_min is ``min(d_min, 1)``; in its camera units the
      covered depths lie around 1. Here d_min is over covered pixels only, whatever the units.)
    - ``normalise="none"``: ``g = d`` (raw depth), or ``g = 1 / d`` (inverse depth) with
      ``near_bright``.

    Uncovered pixels get ``g = background``. The grey image is repeated to 3 channels and each
    channel c is standardised as ``(g - mean[c]) / std[c]``. :data:`ENCODINGS` names the
    combinations that :class:`DepthRenderer` offers as presets.

    Args:
        depth: (..., H, W) depth maps, ``+inf`` (any non-finite value) where empty, e.g. the
            (B, V, H, W) ``depth`` of :func:`render_depth`.
        background: grey level of uncovered pixels, before standardisation.
        normalise: ``"per_image"``, ``"min_over_max"`` or ``"none"`` (see above).
        near_bright: make nearer points brighter (see above).
        mean: per-channel means (3 values); CLIP's by default.
        std: per-channel standard deviations (3 positive values); CLIP's by default.

    Returns:
        (..., 3, H, W) images in depth's floating dtype.
    """
    _choice("normalise", normalise, NORMALISATIONS)
    if normalise == "min_over_max" and near_bright:
        raise ValueError("normalise 'min_over_max' draws near points dark; set near_bright to False.")
    if not isinstance(depth, Tensor) or depth.dim() < 2 or not depth.is_floating_point():
        raise BadInputError("`depth` must be a floating-point (..., H, W) tensor; pass render_depth(...).depth.")
    mean_t = torch.as_tensor(mean, dtype=depth.dtype, device=depth.device)
    std_t = torch.as_tensor(std, dtype=depth.dtype, device=depth.device)
    if mean_t.shape != (3,) or std_t.shape != (3,) or not bool((std_t > 0).all()):
        raise ValueError("`mean` and `std` must hold 3 values each, with std > 0; pass per-channel statistics.")
    covered = torch.isfinite(depth)
    if normalise == "none":
        grey = 1 / depth if near_bright else depth
    else:
        near = torch.where(covered, depth, torch.inf).amin(dim=(-2, -1), keepdim=True)
        far = torch.where(covered, depth, -torch.inf).amax(dim=(-2, -1), keepdim=True)
        offset = torch.where(covered, depth, near) - near  # empty images: near = +inf
        if normalise == "per_image":
            grey = offset / (far - near).clamp_min(_RANGE_EPS)
            grey = 1 - grey if near_bright else grey
        else:  # the release's (d - d_min) / d_max * 200/255
            grey = offset / far.clamp_min(_RANGE_EPS) * RELEASE_GREY_SCALE
    grey = torch.where(covered, grey, torch.as_tensor(background, dtype=depth.dtype))
    image = grey.unsqueeze(-3).expand(*depth.shape[:-2], 3, *depth.shape[-2:])
    return (image - mean_t.view(3, 1, 1)) / std_t.view(3, 1, 1)


class DepthRenderer(torch.nn.Module):
    """Point clouds to CLIP-ready depth images from a fixed camera set (CLIP2Point).

    Built from the ``render:`` config section, e.g. ``{image_size: 224, dilation: 2,
    reduction: min, views: orthogonal6}``. The cameras are non-persistent buffers, so they
    follow ``.to(device)`` and stay out of checkpoints.

    Args:
        image_size: side H = W of the images in pixels.
        dilation: dilation rate R; each point covers an R x R pixel square.
        reduction: ``"min"`` (Eqs. 9-10) or ``"weighted"`` (PointCLIP, Eq. 8).
        views: ``"orthogonal6"`` (front, back, left, right, top, bottom) or
            ``"orthogonal_corner10"`` (plus four upper corners).
        distance: camera distance from the origin.
        fov_deg: field of view in degrees.
        encoding: a preset of :data:`ENCODINGS` giving ``normalise``, ``near_bright`` and
            ``background``: ``"near_bright"`` (near points bright on black) or
            ``"clip2point_release"`` (the authors' release: near points dark on white,
            ``(d - d_min) / d_max * 200/255``). CLIP2Point's model and modes default to
            :data:`CLIP2POINT_ENCODING`.
        background: grey level of uncovered pixels (see :func:`depth_to_image`); None: the
            encoding's.
        normalise: ``"per_image"``, ``"min_over_max"`` or ``"none"`` (see
            :func:`depth_to_image`); None: the encoding's.
        near_bright: nearer points are brighter; None: the encoding's.
        mean: per-channel means for the standardisation; CLIP's by default.
        std: per-channel standard deviations; CLIP's by default.
    """

    view: Tensor
    proj: Tensor

    def __init__(
        self, image_size: int = 224, dilation: int = 1, reduction: str = "min",
        views: str = "orthogonal6", distance: float = DEFAULT_DISTANCE,
        fov_deg: float = DEFAULT_FOV_DEG, encoding: str = "near_bright", background: float | None = None,
        normalise: str | None = None, near_bright: bool | None = None, mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
    ) -> None:
        super().__init__()
        self.image_size = _positive_int("image_size", image_size)
        self.dilation = _positive_int("dilation", dilation)
        self.reduction = _choice("reduction", reduction, REDUCTIONS)
        self.views = _choice("views", views, tuple(VIEW_SETS))
        self.encoding = _choice("encoding", encoding, tuple(ENCODINGS))
        preset = ENCODINGS[encoding]
        self.normalise = _choice("normalise", preset["normalise"] if normalise is None else normalise, NORMALISATIONS)
        self.near_bright = bool(preset["near_bright"] if near_bright is None else near_bright)
        self.background = float(preset["background"] if background is None else background)
        if self.normalise == "min_over_max" and self.near_bright:
            raise ValueError("normalise 'min_over_max' draws near points dark; set near_bright to False.")
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("`mean` and `std` must hold 3 values each, with std > 0; pass per-channel statistics.")
        view, proj = VIEW_SETS[views](distance=distance, fov_deg=fov_deg)
        self.register_buffer("view", view, persistent=False)
        self.register_buffer("proj", proj, persistent=False)

    @property
    def num_views(self) -> int:
        """Number of cameras V."""
        return self.view.shape[0]

    def render(self, points: Tensor, distance_scale: Tensor | None = None) -> DepthMaps:
        """Depth maps of ``points`` (B, N, 3) from every camera.

        Args:
            points: (B, N, 3) world coordinates.
            distance_scale: optional (B,) per-cloud camera-distance factors, e.g. from
                :func:`.view_sets.sample_distance_scales`.

        Returns:
            :class:`DepthMaps` with (B, V, H, W) tensors.
        """
        view = self.view
        if distance_scale is not None:
            scale = torch.as_tensor(distance_scale, device=view.device).reshape(-1, 1)
            view = scale_camera_distance(view, scale)  # (B, V, 4, 4)
        return render_depth(points, view, self.proj, self.image_size, self.dilation, self.reduction)

    def forward(self, points: Tensor, distance_scale: Tensor | None = None) -> Tensor:
        """CLIP-ready images of ``points``.

        Args:
            points: (B, N, 3) world coordinates.
            distance_scale: optional (B,) per-cloud camera-distance factors.

        Returns:
            (B, V, 3, H, W) standardised depth images in the points' dtype.
        """
        return self.to_image(self.render(points, distance_scale).depth.to(points.dtype))

    def to_image(self, depth: Tensor) -> Tensor:
        """CLIP-ready images (..., 3, H, W) of depth maps (..., H, W) with this renderer's encoding.

        Args:
            depth: depth maps, non-finite where empty (:func:`render_depth`'s ``depth``).
        """
        return depth_to_image(depth, self.background, self.normalise, self.near_bright, self.mean, self.std)

    def extra_repr(self) -> str:
        return (f"image_size={self.image_size}, dilation={self.dilation}, reduction={self.reduction!r}, "
                f"views={self.views!r}, encoding={self.encoding!r}, normalise={self.normalise!r}, "
                f"near_bright={self.near_bright}, background={self.background}")
