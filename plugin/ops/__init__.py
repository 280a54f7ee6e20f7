"""Python API of the native point ops, with a pure-PyTorch reference of each.

The ops live in the ``pointnet2_ops`` package (``third_party/pointnet2_ops``): C++ CPU kernels, CUDA
kernels and bindings. This module is the plugin's entry point to them.

Attributes:
    ops: kernel-level functions (validated, CPU/CUDA by the tensors' device), no autograd.
    pointnet2_utils: the field's ``pointnet2_ops`` API with autograd, ``QueryAndGroup``, ``GroupAll``.
    reference: the pure-PyTorch reference implementations.
"""
from pointnet2_ops import PointOpsInputError, backend, has_cuda_kernels, ops, pointnet2_utils, reference

__all__ = ["ops", "pointnet2_utils", "reference", "backend", "has_cuda_kernels", "PointOpsInputError"]
