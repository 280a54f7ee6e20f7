"""The ``pointnet2_utils`` API used across PointNet++ code bases (OpenPoints, pointnet2_ops).

Autograd functions over :mod:`pointnet2_ops.ops`, with the field's names and conventions:

* ``gather_operation``, ``grouping_operation`` and ``three_interpolate`` are differentiable
  w.r.t. their features only (``None`` for indices and weights, as in OpenPoints);
* ``furthest_point_sample``, ``ball_query``, ``three_nn`` and ``knn`` return indices or
  distances and have no gradient;
* ``chamfer_distance`` (not in OpenPoints) is differentiable w.r.t. both point clouds through
  its squared distances, the nearest indices held fixed;
* ``three_nn`` returns Euclidean distances ``sqrt(dist2)`` like OpenPoints' wrapper, whereas
  the kernel-level :func:`pointnet2_ops.ops.three_nn` returns squared ones; ``knn`` returns
  squared distances, like :func:`pointnet2_ops.ops.knn`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from . import ops
from .errors import PointOpsInputError

__all__ = [
    "FurthestPointSampling",
    "GatherOperation",
    "BallQuery",
    "GroupingOperation",
    "ThreeNN",
    "ThreeInterpolate",
    "furthest_point_sample",
    "gather_operation",
    "ball_query",
    "grouping_operation",
    "three_nn",
    "three_interpolate",
    "knn",
    "ChamferDistance",
    "chamfer_distance",
    "QueryAndGroup",
    "GroupAll",
]


class FurthestPointSampling(Function):
    """Furthest point sampling (no gradient); see :func:`ops.furthest_point_sample`."""

    @staticmethod
    def forward(ctx: Any, xyz: Tensor, npoint: int) -> Tensor:
        """Args: xyz (B, N, 3); npoint. Returns (B, npoint) int32 indices."""
        idx = ops.furthest_point_sample(xyz, npoint)
        ctx.mark_non_differentiable(idx)
        return idx

    @staticmethod
    def backward(ctx: Any, grad_idx: Tensor) -> tuple[None, None]:
        return None, None


class GatherOperation(Function):
    """Gather features at indices; differentiable w.r.t. ``features``."""

    @staticmethod
    def forward(ctx: Any, features: Tensor, idx: Tensor) -> Tensor:
        """Args: features (B, C, N); idx (B, M). Returns (B, C, M)."""
        out = ops.gather_points(features, idx)
        ctx.save_for_backward(idx)
        ctx.n = features.shape[2]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None]:
        (idx,) = ctx.saved_tensors
        return ops.gather_points_backward(grad_out.contiguous(), idx, ctx.n), None


class BallQuery(Function):
    """Ball query (no gradient); see :func:`pointnet2_ops.ops.ball_query`."""

    @staticmethod
    def forward(ctx: Any, radius: float, nsample: int, xyz: Tensor, new_xyz: Tensor) -> Tensor:
        """Args: radius; nsample; xyz (B, N, 3); new_xyz (B, M, 3). Returns (B, M, nsample)."""
        idx = ops.ball_query(radius, nsample, xyz, new_xyz)
        ctx.mark_non_differentiable(idx)
        return idx

    @staticmethod
    def backward(ctx: Any, grad_idx: Tensor) -> tuple[None, None, None, None]:
        return None, None, None, None


class GroupingOperation(Function):
    """Group features by neighbourhood indices; differentiable w.r.t. ``features``."""

    @staticmethod
    def forward(ctx: Any, features: Tensor, idx: Tensor) -> Tensor:
        """Args: features (B, C, N); idx (B, M, K). Returns (B, C, M, K)."""
        out = ops.group_points(features, idx)
        ctx.save_for_backward(idx)
        ctx.n = features.shape[2]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None]:
        (idx,) = ctx.saved_tensors
        return ops.group_points_backward(grad_out.contiguous(), idx, ctx.n), None


class ThreeNN(Function):
    """Three nearest neighbours with EUCLIDEAN distances (no gradient)."""

    @staticmethod
    def forward(ctx: Any, unknown: Tensor, known: Tensor) -> tuple[Tensor, Tensor]:
        """Args: unknown (B, n, 3); known (B, m, 3). Returns (dist (B, n, 3), idx (B, n, 3))."""
        dist2, idx = ops.three_nn(unknown, known)
        dist = torch.sqrt(dist2)
        ctx.mark_non_differentiable(dist, idx)
        return dist, idx

    @staticmethod
    def backward(ctx: Any, grad_dist: Tensor, grad_idx: Tensor) -> tuple[None, None]:
        return None, None


class ThreeInterpolate(Function):
    """Inverse-distance interpolation; differentiable w.r.t. ``features`` only."""

    @staticmethod
    def forward(ctx: Any, features: Tensor, idx: Tensor, weight: Tensor) -> Tensor:
        """Args: features (B, C, m); idx, weight (B, n, 3). Returns (B, C, n)."""
        out = ops.three_interpolate(features, idx, weight)
        ctx.save_for_backward(idx, weight)
        ctx.m = features.shape[2]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None, None]:
        idx, weight = ctx.saved_tensors
        grad = ops.three_interpolate_backward(grad_out.contiguous(), idx, weight, ctx.m)
        return grad, None, None


def _gather_points(points: Tensor, idx: Tensor) -> Tensor:
    """``points[i, idx[i, n]]``: (B, P, 3) points at (B, Q) int64 indices -> (B, Q, 3)."""
    return points.gather(1, idx.unsqueeze(-1).expand(-1, -1, 3))


def _scatter_points(values: Tensor, idx: Tensor, p: int) -> Tensor:
    """Sum (B, Q, 3) values into (B, p, 3) rows at (B, Q) int64 indices (index_add per cloud)."""
    batch = values.shape[0]
    flat = (idx + p * torch.arange(batch, device=idx.device).unsqueeze(1)).reshape(-1)
    out = values.new_zeros(batch * p, 3)
    return out.index_add_(0, flat, values.reshape(-1, 3)).view(batch, p, 3)


class ChamferDistance(Function):
    """Nearest neighbours both ways; differentiable w.r.t. ``a`` and ``b`` through the distances.

    With ``j = idx_ab[i, n]``, ``dist_ab[i, n] = |a[i, n] - b[i, j]|^2`` has gradient
    ``2 (a[i, n] - b[i, j])`` w.r.t. ``a[i, n]`` and its negative w.r.t. ``b[i, j]`` (summed over
    every n choosing j); ``dist_ba`` likewise with the roles swapped. The indices are piecewise
    constant and get no gradient.
    """

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Args: a (B, N, 3); b (B, M, 3). Returns (B, N) dist_ab, idx_ab; (B, M) dist_ba, idx_ba."""
        dist_ab, idx_ab, dist_ba, idx_ba = ops.chamfer_distance(a, b)
        ctx.save_for_backward(a, b, idx_ab, idx_ba)
        ctx.mark_non_differentiable(idx_ab, idx_ba)
        return dist_ab, idx_ab, dist_ba, idx_ba

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_ab: Tensor, grad_idx_ab: Tensor, grad_ba: Tensor,
                 grad_idx_ba: Tensor) -> tuple[Tensor | None, Tensor | None]:
        a, b, idx_ab, idx_ba = ctx.saved_tensors
        dtype = grad_ab.dtype  # the distances' compute dtype (float32 for half inputs)
        a_c, b_c = a.to(dtype), b.to(dtype)
        g_ab = 2 * grad_ab.unsqueeze(-1) * (a_c - _gather_points(b_c, idx_ab))  # (B, N, 3)
        g_ba = 2 * grad_ba.unsqueeze(-1) * (b_c - _gather_points(a_c, idx_ba))  # (B, M, 3)
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = (g_ab - _scatter_points(g_ba, idx_ba, a.shape[1])).to(a.dtype)
        if ctx.needs_input_grad[1]:
            grad_b = (g_ba - _scatter_points(g_ab, idx_ab, b.shape[1])).to(b.dtype)
        return grad_a, grad_b


furthest_point_sample = FurthestPointSampling.apply
gather_operation = GatherOperation.apply
ball_query = BallQuery.apply
grouping_operation = GroupingOperation.apply
three_nn = ThreeNN.apply
three_interpolate = ThreeInterpolate.apply


def chamfer_distance(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Nearest neighbours both ways with SQUARED distances, differentiable w.r.t. ``a`` and ``b``.

    See :func:`pointnet2_ops.ops.chamfer_distance` (ties: lowest index) and
    :class:`ChamferDistance` (the gradient).

    Args:
        a: (B, N, 3) points.
        b: (B, M, 3) points.

    Returns:
        ``(dist_ab, idx_ab, dist_ba, idx_ba)``: (B, N) squared distances from each point of ``a``
        to its nearest point of ``b`` and that point's int64 index, then the same (B, M) for ``b``.
    """
    return ChamferDistance.apply(a, b)


def knn(query: Tensor, support: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """k nearest neighbours with SQUARED distances (no gradient).

    Args:
        query: (B, M, 3) query points.
        support: (B, N, 3) support points.
        k: neighbours per query, ``1 <= k <= N``.

    Returns:
        ``(dist2, idx)``, each (B, M, k): ascending squared distances and int32 indices.
    """
    return ops.knn(query, support, k)


class QueryAndGroup(nn.Module):
    """Ball-query neighbourhoods and group coordinates (relative to the centre) and features.

    Args:
        radius: ball radius.
        nsample: neighbours per centre.
        use_xyz: concatenate the relative coordinates before the features.
    """

    def __init__(self, radius: float, nsample: int, use_xyz: bool = True) -> None:
        super().__init__()
        self.radius, self.nsample, self.use_xyz = radius, nsample, use_xyz

    def forward(self, xyz: Tensor, new_xyz: Tensor, features: Tensor | None = None) -> Tensor:
        """Group the neighbourhood of each centre.

        Args:
            xyz: (B, N, 3) points.
            new_xyz: (B, npoint, 3) centres.
            features: optional (B, C, N) point features.

        Returns:
            (B, 3 + C, npoint, nsample) with ``use_xyz`` (C = 0 without features), else
            (B, C, npoint, nsample).
        """
        idx = ball_query(self.radius, self.nsample, xyz, new_xyz)
        grouped_xyz = grouping_operation(xyz.transpose(1, 2).contiguous(), idx)
        grouped_xyz = grouped_xyz - new_xyz.transpose(1, 2).unsqueeze(-1)
        if features is None:
            if not self.use_xyz:
                raise PointOpsInputError(
                    "`features` is None but use_xyz=False; pass features or set use_xyz=True."
                )
            return grouped_xyz
        grouped_features = grouping_operation(features, idx)
        if not self.use_xyz:
            return grouped_features
        return torch.cat([grouped_xyz, grouped_features], dim=1)


class GroupAll(nn.Module):
    """Group all points into a single neighbourhood.

    Args:
        use_xyz: concatenate the (absolute) coordinates before the features.
    """

    def __init__(self, use_xyz: bool = True) -> None:
        super().__init__()
        self.use_xyz = use_xyz

    def forward(self, xyz: Tensor, new_xyz: Tensor | None = None,
                features: Tensor | None = None) -> Tensor:
        """Group every point.

        Args:
            xyz: (B, N, 3) points.
            new_xyz: ignored (kept for API compatibility).
            features: optional (B, C, N) point features.

        Returns:
            (B, 3 + C, 1, N) with ``use_xyz`` (C = 0 without features), else (B, C, 1, N).
        """
        grouped_xyz = xyz.transpose(1, 2).unsqueeze(2)
        if features is None:
            if not self.use_xyz:
                raise PointOpsInputError(
                    "`features` is None but use_xyz=False; pass features or set use_xyz=True."
                )
            return grouped_xyz
        grouped_features = features.unsqueeze(2)
        if not self.use_xyz:
            return grouped_features
        return torch.cat([grouped_xyz, grouped_features], dim=1)
