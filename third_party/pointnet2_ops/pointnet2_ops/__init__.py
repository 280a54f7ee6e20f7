"""PointNet++ point-cloud ops with C++/CUDA kernels and a pure-PyTorch reference.

Modules:
    pointnet2_utils: the field's autograd API (``furthest_point_sample``, ``gather_operation``,
        ``ball_query``, ``grouping_operation``, ``three_nn``, ``three_interpolate``, ``knn``,
        ``QueryAndGroup``, ``GroupAll``) and the differentiable ``chamfer_distance``.
    ops: validated kernel-level functions (no autograd).
    reference: pure-PyTorch implementations of the kernel-level functions.

Set ``POINTNET2_OPS_BACKEND=reference`` before import to force the reference ops;
``python -m pointnet2_ops`` prints the backend in use (and fails under ``CI=true`` without the
native ops).
"""

from . import ops, pointnet2_utils, reference
from ._native import backend, has_cuda_kernels
from .errors import PointOpsIndexError, PointOpsInputError

__all__ = [
    "PointOpsIndexError",
    "PointOpsInputError",
    "backend",
    "has_cuda_kernels",
    "ops",
    "pointnet2_utils",
    "reference",
]
