"""Rebind OpenPoints' seven point-op autograd classes to our device-agnostic ops.

Upstream defect: ``openpoints.models.layers.{group,subsample,upsampling}`` allocate their outputs with
``torch.cuda.FloatTensor``/``torch.cuda.IntTensor`` and call the unshipped CUDA extension, so
PointNeXt, PointNet++ and every other model using them fail on CPU, and on GPU without the
extension. Each OpenPoints alias (``furthest_point_sample = FurthestPointSampling.apply`` ...) is a
bound ``Cls.apply`` that looks ``forward``/``backward`` up on the class at call time, so replacing
them on the class fixes every alias at once. We take them from the matching autograd function of
``pointnet2_ops.pointnet2_utils``, which has the same argument order and return values.
"""
import importlib
from typing import Dict, List, Tuple

from pointnet2_ops import pointnet2_utils

# (openpoints module, class name) -> the pointnet2_utils op whose Function replaces its methods.
REBINDINGS: Dict[Tuple[str, str], str] = {
    ("openpoints.models.layers.group", "GroupingOperation"): "grouping_operation",
    ("openpoints.models.layers.group", "GatherOperation"): "gather_operation",
    ("openpoints.models.layers.group", "BallQuery"): "ball_query",
    ("openpoints.models.layers.subsample", "FurthestPointSampling"): "furthest_point_sample",
    ("openpoints.models.layers.subsample", "GatherOperation"): "gather_operation",
    ("openpoints.models.layers.upsampling", "ThreeNN"): "three_nn",
    ("openpoints.models.layers.upsampling", "ThreeInterpolate"): "three_interpolate",
}


def replacement_function(op_name: str) -> type:
    """The ``torch.autograd.Function`` subclass behind ``pointnet2_utils.<op_name>``."""
    return getattr(pointnet2_utils, op_name).__self__


def rebind_autograd_classes() -> List[str]:
    """Point each upstream class's ``forward``/``backward`` at ours; returns the patched names."""
    patched = []
    for (module_name, class_name), op_name in REBINDINGS.items():
        upstream = getattr(importlib.import_module(module_name), class_name)
        ours = replacement_function(op_name)
        upstream.forward = ours.forward
        upstream.backward = ours.backward
        patched.append(f"{module_name}.{class_name}")
    return patched
