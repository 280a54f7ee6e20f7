"""Kernel-level functional API of pointnet2_ops.

Every function validates its arguments (raising :class:`~pointnet2_ops.PointOpsInputError`),
converts dtypes, and dispatches to the compiled CPU/CUDA kernels for the inputs' device, or to
:mod:`pointnet2_ops.reference` when they are unavailable. Results carry no autograd history;
the differentiable wrappers live in :mod:`pointnet2_ops.pointnet2_utils`.

Dtypes: float32 and float64 are computed natively; float16/bfloat16 are computed in float32.
Feature-valued results (gather, group, interpolate and their backwards) are returned in the
features' input dtype, distances in the compute dtype, indices as int32 (the rasteriser's
pixel-to-point index maps, the splat counts and ``chamfer_distance``'s indices are int64, the depth maps
float32). Index arguments may be int32 or int64 and must lie in ``[0, N)``: CPU indices are
checked before any kernel runs (:class:`~pointnet2_ops.errors.PointOpsIndexError`, an
IndexError); CUDA indices are not read, since that would synchronise the device.

The semantics equal the PointNet++ CUDA kernels used by OpenPoints (Shaoshuai Shi's
pointnet2_batch), with ties always resolved towards the lowest index.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _checks
from ._native import kernels_for

__all__ = [
    "furthest_point_sample",
    "gather_points",
    "gather_points_backward",
    "ball_query",
    "group_points",
    "group_points_backward",
    "three_nn",
    "three_interpolate",
    "three_interpolate_backward",
    "knn",
    "chamfer_distance",
    "rasterize_points",
    "splat_weighted_depth",
    "splat_sum_depth",
]


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (float16/bfloat16 are upcast)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _as_index(idx: Tensor) -> Tensor:
    return idx.to(torch.int32)


def _check_batch(name: str, t: Tensor, ref_name: str, ref: Tensor) -> None:
    _checks.dims_match(name, t, 0, f"the batch size of `{ref_name}`", ref.shape[0])


@torch.no_grad()
def furthest_point_sample(xyz: Tensor, npoint: int) -> Tensor:
    """Iterative furthest point sampling.

    The first sample is point 0; each next one is the point with the largest squared distance
    to the samples so far (running minimum starting at 1e10), ties going to the lowest index.

    Args:
        xyz: (B, N, 3) coordinates.
        npoint: number of samples, ``1 <= npoint <= N``.

    Returns:
        (B, npoint) int32 indices into N.
    """
    xyz = _checks.coords("xyz", xyz)
    npoint = _checks.count("npoint", npoint, xyz.shape[1], "the number of points N")
    xyz = xyz.to(_compute_dtype(xyz))
    return kernels_for(xyz).furthest_point_sample(xyz, npoint)


@torch.no_grad()
def gather_points(features: Tensor, idx: Tensor) -> Tensor:
    """Gather features at point indices: ``out[b, c, j] = features[b, c, idx[b, j]]``.

    Args:
        features: (B, C, N) features.
        idx: (B, M) int32/int64 indices into N.

    Returns:
        (B, C, M) features in ``features.dtype``.
    """
    features = _checks.values("features", features, "(B, C, N)", points_dim=2)
    idx = _checks.index("idx", idx, "(B, M)")
    _checks.same_device(features=features, idx=idx)
    _check_batch("idx", idx, "features", features)
    _checks.index_range("idx", idx, features.shape[2], "the N points of `features`")
    f = features.to(_compute_dtype(features))
    return kernels_for(f).gather_points(f, _as_index(idx)).to(features.dtype)


@torch.no_grad()
def gather_points_backward(grad_out: Tensor, idx: Tensor, n: int) -> Tensor:
    """Gradient of :func:`gather_points` w.r.t. features (scatter-add over ``idx``).

    Args:
        grad_out: (B, C, M) gradient of the gathered features.
        idx: (B, M) int32/int64 indices used in the forward pass.
        n: number of points N of the original features.

    Returns:
        (B, C, N) gradient in ``grad_out.dtype``.
    """
    grad_out = _checks.values("grad_out", grad_out, "(B, C, M)")
    idx = _checks.index("idx", idx, "(B, M)")
    n = _checks.count("n", n)
    _checks.same_device(grad_out=grad_out, idx=idx)
    _check_batch("idx", idx, "grad_out", grad_out)
    _checks.dims_match("idx", idx, 1, "M of `grad_out` (dim 2)", grad_out.shape[2])
    _checks.index_range("idx", idx, n, "the `n` points")
    g = grad_out.to(_compute_dtype(grad_out))
    return kernels_for(g).gather_points_backward(g, _as_index(idx), n).to(grad_out.dtype)


@torch.no_grad()
def ball_query(radius: float, nsample: int, xyz: Tensor, new_xyz: Tensor) -> Tensor:
    """Indices of up to ``nsample`` points within ``radius`` of each centre.

    For each centre the first ``nsample`` points in index order with squared distance
    strictly below ``radius**2`` are taken; remaining slots repeat the first hit, and a centre
    without any hit gets all zeros.

    Args:
        radius: ball radius, > 0.
        nsample: neighbours per centre, >= 1 (may exceed N; the tail is padded).
        xyz: (B, N, 3) points.
        new_xyz: (B, M, 3) centres.

    Returns:
        (B, M, nsample) int32 indices into N.
    """
    radius = _checks.positive_real("radius", radius)
    nsample = _checks.count("nsample", nsample)
    xyz = _checks.coords("xyz", xyz)
    new_xyz = _checks.coords("new_xyz", new_xyz)
    _checks.same_device(xyz=xyz, new_xyz=new_xyz)
    _check_batch("new_xyz", new_xyz, "xyz", xyz)
    dtype = _compute_dtype(xyz, new_xyz)
    xyz, new_xyz = xyz.to(dtype), new_xyz.to(dtype)
    return kernels_for(xyz).ball_query(radius, nsample, xyz, new_xyz)


@torch.no_grad()
def group_points(features: Tensor, idx: Tensor) -> Tensor:
    """Group features by neighbourhood: ``out[b, c, m, k] = features[b, c, idx[b, m, k]]``.

    Args:
        features: (B, C, N) features.
        idx: (B, M, K) int32/int64 indices into N.

    Returns:
        (B, C, M, K) features in ``features.dtype``.
    """
    features = _checks.values("features", features, "(B, C, N)", points_dim=2)
    idx = _checks.index("idx", idx, "(B, M, K)")
    _checks.same_device(features=features, idx=idx)
    _check_batch("idx", idx, "features", features)
    _checks.index_range("idx", idx, features.shape[2], "the N points of `features`")
    f = features.to(_compute_dtype(features))
    return kernels_for(f).group_points(f, _as_index(idx)).to(features.dtype)


@torch.no_grad()
def group_points_backward(grad_out: Tensor, idx: Tensor, n: int) -> Tensor:
    """Gradient of :func:`group_points` w.r.t. features (scatter-add over ``idx``).

    Args:
        grad_out: (B, C, M, K) gradient of the grouped features.
        idx: (B, M, K) int32/int64 indices used in the forward pass.
        n: number of points N of the original features.

    Returns:
        (B, C, N) gradient in ``grad_out.dtype``.
    """
    grad_out = _checks.values("grad_out", grad_out, "(B, C, M, K)")
    idx = _checks.index("idx", idx, "(B, M, K)")
    n = _checks.count("n", n)
    _checks.same_device(grad_out=grad_out, idx=idx)
    _check_batch("idx", idx, "grad_out", grad_out)
    _checks.dims_match("idx", idx, 1, "M of `grad_out` (dim 2)", grad_out.shape[2])
    _checks.dims_match("idx", idx, 2, "K of `grad_out` (dim 3)", grad_out.shape[3])
    _checks.index_range("idx", idx, n, "the `n` points")
    g = grad_out.to(_compute_dtype(grad_out))
    return kernels_for(g).group_points_backward(g, _as_index(idx), n).to(grad_out.dtype)


@torch.no_grad()
def three_nn(unknown: Tensor, known: Tensor) -> tuple[Tensor, Tensor]:
    """Three nearest known points of each unknown point, with SQUARED distances.

    Note that :func:`pointnet2_ops.pointnet2_utils.three_nn` returns Euclidean distances
    (the square root of these), like OpenPoints' wrapper.

    Args:
        unknown: (B, n, 3) query points.
        known: (B, m, 3) reference points; if m < 3 the missing slots get dist2 = +inf, idx 0.

    Returns:
        ``(dist2, idx)``: (B, n, 3) ascending squared distances in the compute dtype, and
        (B, n, 3) int32 indices into m (ties: lower index first).
    """
    unknown = _checks.coords("unknown", unknown)
    known = _checks.coords("known", known)
    _checks.same_device(unknown=unknown, known=known)
    _check_batch("known", known, "unknown", unknown)
    dtype = _compute_dtype(unknown, known)
    unknown, known = unknown.to(dtype), known.to(dtype)
    return tuple(kernels_for(unknown).three_nn(unknown, known))


def _check_interp_args(idx: Tensor, weight: Tensor, ref_name: str, ref: Tensor) -> None:
    _checks.same_device(**{ref_name: ref, "idx": idx, "weight": weight})
    _check_batch("idx", idx, ref_name, ref)
    _checks.dims_match("idx", idx, 2, "the number of neighbours", 3)
    _checks.same_shape("weight", weight, "idx", idx)


@torch.no_grad()
def three_interpolate(features: Tensor, idx: Tensor, weight: Tensor) -> Tensor:
    """Weighted sum of three features: ``sum_j weight[b, i, j] * features[b, c, idx[b, i, j]]``.

    Args:
        features: (B, C, m) features of the known points.
        idx: (B, n, 3) int32/int64 indices into m.
        weight: (B, n, 3) weights.

    Returns:
        (B, C, n) interpolated features in ``features.dtype``.
    """
    features = _checks.values("features", features, "(B, C, m)", points_dim=2)
    idx = _checks.index("idx", idx, "(B, n, 3)")
    weight = _checks.values("weight", weight, "(B, n, 3)")
    _check_interp_args(idx, weight, "features", features)
    _checks.index_range("idx", idx, features.shape[2], "the m known points of `features`")
    dtype = _compute_dtype(features, weight)
    f, w = features.to(dtype), weight.to(dtype)
    return kernels_for(f).three_interpolate(f, _as_index(idx), w).to(features.dtype)


@torch.no_grad()
def three_interpolate_backward(grad_out: Tensor, idx: Tensor, weight: Tensor, m: int) -> Tensor:
    """Gradient of :func:`three_interpolate` w.r.t. features.

    Args:
        grad_out: (B, C, n) gradient of the interpolated features.
        idx: (B, n, 3) int32/int64 indices used in the forward pass.
        weight: (B, n, 3) weights used in the forward pass.
        m: number of known points.

    Returns:
        (B, C, m) gradient in ``grad_out.dtype``.
    """
    grad_out = _checks.values("grad_out", grad_out, "(B, C, n)")
    idx = _checks.index("idx", idx, "(B, n, 3)")
    weight = _checks.values("weight", weight, "(B, n, 3)")
    m = _checks.count("m", m)
    _check_interp_args(idx, weight, "grad_out", grad_out)
    _checks.dims_match("idx", idx, 1, "n of `grad_out` (dim 2)", grad_out.shape[2])
    _checks.index_range("idx", idx, m, "the `m` known points")
    dtype = _compute_dtype(grad_out, weight)
    g, w = grad_out.to(dtype), weight.to(dtype)
    return kernels_for(g).three_interpolate_backward(g, _as_index(idx), w, m).to(grad_out.dtype)


@torch.no_grad()
def knn(query: Tensor, support: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """k nearest support points of each query point, with SQUARED distances.

    Args:
        query: (B, M, 3) query points.
        support: (B, N, 3) support points.
        k: neighbours per query, ``1 <= k <= N``.

    Returns:
        ``(dist2, idx)``: (B, M, k) ascending squared distances in the compute dtype, and
        (B, M, k) int32 indices into N (ties: lower index first).
    """
    query = _checks.coords("query", query)
    support = _checks.coords("support", support)
    k = _checks.count("k", k, support.shape[1], "the number of support points N")
    _checks.same_device(query=query, support=support)
    _check_batch("support", support, "query", query)
    dtype = _compute_dtype(query, support)
    query, support = query.to(dtype), support.to(dtype)
    return tuple(kernels_for(query).knn(query, support, k))


@torch.no_grad()
def chamfer_distance(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Nearest neighbour of every point in the other cloud, both ways (the Chamfer terms).

    ``dist_ab[i, n] = min_m |a[i, n] - b[i, m]|^2`` with ``idx_ab[i, n]`` the minimising m, and
    likewise ``dist_ba``/``idx_ba`` for the points of ``b`` among those of ``a``. The candidates
    are scanned in index order, so ties go to the lowest index (duplicate points: the first copy).
    CPU inputs must be finite (checked); CUDA inputs are not read, and there NaN distances are
    never nearest (a point with none below +inf gets +inf and index 0).

    Args:
        a: (B, N, 3) points.
        b: (B, M, 3) points of as many clouds (M may differ from N).

    Returns:
        ``(dist_ab, idx_ab, dist_ba, idx_ba)``: (B, N) squared distances in the compute dtype and
        (B, N) int64 indices into M, then (B, M) and (B, M) the same way round.
    """
    a = _checks.coords("a", a)
    b = _checks.coords("b", b)
    _checks.same_device(a=a, b=b)
    _check_batch("b", b, "a", a)
    _checks.finite("a", a)
    _checks.finite("b", b)
    dtype = _compute_dtype(a, b)
    a, b = a.to(dtype), b.to(dtype)
    return tuple(kernels_for(a).chamfer_distance(a, b))


@torch.no_grad()
def rasterize_points(
    pixels: Tensor, height: int, width: int, footprint: int
) -> tuple[Tensor, Tensor]:
    """Z-buffer splatting: the nearest point covering each pixel.

    A point at continuous pixel coordinates ``(col, row)`` covers the ``footprint x footprint``
    square of pixels with columns ``floor(col) - (footprint-1)//2 ... floor(col) + footprint//2``
    (rows likewise), clipped to the image. Depths are rounded to float32 and compared there;
    points whose rounded depth is not in (0, inf), or with NaN/infinite coordinates, draw
    nothing. Each pixel keeps the minimum depth, ties going to the lower point index.

    Args:
        pixels: (B, N, 3) ``[col, row, depth]`` per point, with ``col = u * width`` and
            ``row = v * height`` for image coordinates u, v in [0, 1).
        height: image height H in pixels, >= 1.
        width: image width W in pixels, >= 1.
        footprint: side of the square each point covers, >= 1 (``2 * r + 1`` for a splat of
            radius r; a dilation rate R gives ``R``).

    Returns:
        ``(zbuf, index)``: (B, H, W) float32 depths of the winning points (+inf where empty)
        and (B, H, W) int64 indices into N (-1 where empty).
    """
    pixels = _checks.coords("pixels", pixels)
    height = _checks.count("height", height)
    width = _checks.count("width", width)
    footprint = _checks.count("footprint", footprint)
    pixels = pixels.to(_compute_dtype(pixels))
    return tuple(kernels_for(pixels).rasterize_points(pixels, height, width, footprint))


@torch.no_grad()
def splat_weighted_depth(
    pixels: Tensor, height: int, width: int, footprint: int
) -> tuple[Tensor, Tensor]:
    """Inverse-depth-weighted depth splatting (PointCLIP's projection, CLIP2Point Eq. 8).

    Points cover pixels exactly as in :func:`rasterize_points` (same footprint squares, same
    float32-rounded depths, same invisible points). Each covered pixel gets
    ``sum_i w_i z_i / sum_i w_i`` with ``w_i = 1 / z_i`` over its covering points i, summed in
    float64 and rounded to float32 (the order of the sums is unspecified on CUDA, so backends
    agree to float32 rounding, not bit for bit).

    Args:
        pixels: (B, N, 3) ``[col, row, depth]`` per point, as for :func:`rasterize_points`.
        height: image height H in pixels, >= 1.
        width: image width W in pixels, >= 1.
        footprint: side of the square each point covers, >= 1.

    Returns:
        ``(value, index)``: (B, H, W) float32 weighted depths (+inf where empty) and (B, H, W)
        int64 indices of the nearest covering point (-1 where empty), equal to the ``index``
        of :func:`rasterize_points`.
    """
    pixels = _checks.coords("pixels", pixels)
    height = _checks.count("height", height)
    width = _checks.count("width", width)
    footprint = _checks.count("footprint", footprint)
    pixels = pixels.to(_compute_dtype(pixels))
    return tuple(kernels_for(pixels).splat_weighted_depth(pixels, height, width, footprint))


@torch.no_grad()
def splat_sum_depth(
    pixels: Tensor, height: int, width: int, footprint: int
) -> tuple[Tensor, Tensor]:
    """Summing depth splatting, no z-buffer (I2P-MAE's projection, ``reduce='sum'``).

    Points cover pixels exactly as in :func:`rasterize_points` (same footprint squares), but a
    depth of any sign draws: each covered pixel gets ``sum_i z_i`` over its covering points i,
    with ``z_i`` rounded to float32, summed in float64 and rounded to float32 (the order of the
    sums is unspecified on CUDA, so backends agree to float32 rounding, not bit for bit). Points
    with NaN/infinite coordinates or depths draw nothing.

    Args:
        pixels: (B, N, 3) ``[col, row, depth]`` per point, as for :func:`rasterize_points`.
        height: image height H in pixels, >= 1.
        width: image width W in pixels, >= 1.
        footprint: side of the square each point covers, >= 1 (5 for I2P-MAE's 5 x 5 block).

    Returns:
        ``(value, count)``: (B, H, W) float32 summed depths (0 where empty) and (B, H, W) int64
        numbers of covering points (0 where empty; tells an empty pixel from a sum of 0).
    """
    pixels = _checks.coords("pixels", pixels)
    height = _checks.count("height", height)
    width = _checks.count("width", width)
    footprint = _checks.count("footprint", footprint)
    pixels = pixels.to(_compute_dtype(pixels))
    return tuple(kernels_for(pixels).splat_sum_depth(pixels, height, width, footprint))
