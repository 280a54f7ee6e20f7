"""The ``pointnet2_batch_cuda`` extension API that OpenPoints expects, served by our native ops.

OpenPoints 0.1.2 imports ``pointnet2_batch_cuda`` (a CUDA-only extension it does not ship) and calls
its ``*_wrapper`` functions, which write into output tensors allocated by the caller. This module
offers the same nine functions with the same argument order, on any device, so code that calls
``openpoints.cpp.pointnet2_cuda.<name>_wrapper`` directly keeps working. ``plugin.host.install``
registers it under that name in ``sys.modules`` before OpenPoints is imported.

The leading size arguments (b, n, m, c, ...) are accepted for signature compatibility; the sizes are
read from the tensors themselves. Gradient wrappers accumulate into their output (``+=``), like the
CUDA kernels, which add into a zero-filled buffer.
"""
import torch

from pointnet2_ops import ops


def furthest_point_sampling_wrapper(b: int, n: int, m: int, points: torch.Tensor,
                                    temp: torch.Tensor, idx: torch.Tensor) -> int:
    """FPS of ``m`` indices of ``points`` (b,n,3) into ``idx`` (b,m); ``temp`` is unused scratch."""
    idx.copy_(ops.furthest_point_sample(points, m))
    return 1


def gather_points_wrapper(b: int, c: int, n: int, npoints: int, points: torch.Tensor,
                          idx: torch.Tensor, out: torch.Tensor) -> int:
    """``out`` (b,c,npoints) = ``points`` (b,c,n) gathered at ``idx`` (b,npoints)."""
    out.copy_(ops.gather_points(points, idx))
    return 1


def gather_points_grad_wrapper(b: int, c: int, n: int, npoints: int, grad_out: torch.Tensor,
                               idx: torch.Tensor, grad_points: torch.Tensor) -> int:
    """Adds the gradient of :func:`gather_points_wrapper` into ``grad_points`` (b,c,n)."""
    grad_points.add_(ops.gather_points_backward(grad_out, idx, grad_points.shape[2]))
    return 1


def ball_query_wrapper(b: int, n: int, m: int, radius: float, nsample: int,
                       new_xyz: torch.Tensor, xyz: torch.Tensor, idx: torch.Tensor) -> int:
    """Ball query of ``nsample`` neighbours within ``radius`` into ``idx`` (b,m,nsample)."""
    idx.copy_(ops.ball_query(radius, nsample, xyz, new_xyz))
    return 1


def group_points_wrapper(b: int, c: int, n: int, npoints: int, nsample: int, points: torch.Tensor,
                         idx: torch.Tensor, out: torch.Tensor) -> int:
    """``out`` (b,c,npoints,nsample) = ``points`` (b,c,n) grouped by ``idx``."""
    out.copy_(ops.group_points(points, idx))
    return 1


def group_points_grad_wrapper(b: int, c: int, n: int, npoints: int, nsample: int,
                              grad_out: torch.Tensor, idx: torch.Tensor,
                              grad_points: torch.Tensor) -> int:
    """Adds the gradient of :func:`group_points_wrapper` into ``grad_points`` (b,c,n)."""
    grad_points.add_(ops.group_points_backward(grad_out, idx, grad_points.shape[2]))
    return 1


def three_nn_wrapper(b: int, n: int, m: int, unknown: torch.Tensor, known: torch.Tensor,
                     dist2: torch.Tensor, idx: torch.Tensor) -> int:
    """Squared distances and indices of the 3 nearest ``known`` points of each ``unknown`` point."""
    d2, i = ops.three_nn(unknown, known)
    dist2.copy_(d2)
    idx.copy_(i)
    return 1


def three_interpolate_wrapper(b: int, c: int, m: int, n: int, points: torch.Tensor,
                              idx: torch.Tensor, weight: torch.Tensor, out: torch.Tensor) -> int:
    """``out`` (b,c,n) = weighted sum of the 3 features of ``points`` (b,c,m) at ``idx``."""
    out.copy_(ops.three_interpolate(points, idx, weight))
    return 1


def three_interpolate_grad_wrapper(b: int, c: int, n: int, m: int, grad_out: torch.Tensor,
                                   idx: torch.Tensor, weight: torch.Tensor,
                                   grad_points: torch.Tensor) -> int:
    """Adds the gradient of :func:`three_interpolate_wrapper` into ``grad_points`` (b,c,m)."""
    grad_points.add_(ops.three_interpolate_backward(grad_out, idx, weight, m))
    return 1
