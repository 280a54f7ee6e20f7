"""Python API of the native point ops, with a pure-PyTorch reference of each.

The ops live in the ``pointnet2_ops`` package (``third_party/pointnet2_ops``): C++ CPU kernels, CUDA
kernels and bindings. This module is the plugin's entry point to them.

Attributes:
    ops: kernel-level functions (validated, CPU/CUDA by the tensors' device), no autograd.
    pointnet2_utils: the field's ``pointnet2_ops`` API with autograd, ``QueryAndGroup``, ``GroupAll``.
    reference: the pure-PyTorch reference implementations.
    chamfer_distance: nearest neighbours both ways with squared distances, differentiable w.r.t.
        both clouds (``pointnet2_utils.chamfer_distance``); the losses are in ``plugin.losses``.
"""
from pointnet2_ops import PointOpsInputError, backend, has_cuda_kernels, ops, pointnet2_utils, reference
from pointnet2_ops.pointnet2_utils import chamfer_distance

__all__ = ["ops", "pointnet2_utils", "reference", "backend", "has_cuda_kernels", "PointOpsInputError",
           "chamfer_distance"]
