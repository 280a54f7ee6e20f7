"""Invalid arguments raise PointOpsInputError with a message naming the argument and the fix."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from pointnet2_ops import PointOpsIndexError, PointOpsInputError, ops, pointnet2_utils

XYZ = torch.rand(2, 10, 3)
FEATURES = torch.rand(2, 4, 10)
IDX2 = torch.zeros(2, 5, dtype=torch.int32)
IDX3 = torch.zeros(2, 5, 3, dtype=torch.int32)
INT_XYZ = torch.ones(2, 10, 3, dtype=torch.int64)
CHANNELS_FIRST = torch.rand(2, 3, 10)
WEIGHT = torch.rand(2, 5, 3)
PIXELS = torch.rand(2, 10, 3)


def _splat_cases(name: str, op) -> list:
    """The argument checks shared by the two splatting ops, ``op(pixels, height, width, footprint)``."""
    return [
        (f"{name}-list", lambda: op([[0.0, 0.0, 1.0]], 4, 4, 1), ["`pixels` must be a torch.Tensor", "list"]),
        (f"{name}-rank", lambda: op(torch.rand(10, 3), 4, 4, 1), ["`pixels` must have shape (B, N, 3)", "(10, 3)"]),
        (f"{name}-last-dim", lambda: op(torch.rand(2, 10, 2), 4, 4, 1), ["`pixels` must have shape (B, N, 3)"]),
        (f"{name}-int-dtype", lambda: op(torch.ones(2, 10, 3, dtype=torch.int64), 4, 4, 1),
         ["`pixels` must be a floating-point tensor", "torch.int64"]),
        (f"{name}-non-contiguous", lambda: op(torch.rand(2, 3, 10).transpose(1, 2), 4, 4, 1),
         ["`pixels` is not contiguous"]),
        (f"{name}-empty", lambda: op(torch.rand(2, 0, 3), 4, 4, 1), ["`pixels` is empty"]),
        (f"{name}-height-zero", lambda: op(PIXELS, 0, 4, 1), ["`height` must be positive, got 0"]),
        (f"{name}-width-float", lambda: op(PIXELS, 4, 4.0, 1), ["`width` must be an int, got float"]),
        (f"{name}-footprint-zero", lambda: op(PIXELS, 4, 4, 0), ["`footprint` must be positive, got 0"]),
    ]


CASES = [
    # not a tensor
    ("fps-list", lambda: ops.furthest_point_sample([[0.0, 0.0, 0.0]], 1),
     ["`xyz` must be a torch.Tensor", "list", "torch.as_tensor"]),
    ("gather-idx-list", lambda: ops.gather_points(FEATURES, [[0]]),
     ["`idx` must be a torch.Tensor"]),
    # wrong rank / last dim
    ("fps-rank", lambda: ops.furthest_point_sample(torch.rand(10, 3), 2),
     ["`xyz` must have shape (B, N, 3)", "(10, 3)"]),
    ("fps-channels-first", lambda: ops.furthest_point_sample(CHANNELS_FIRST, 2),
     ["`xyz` must have shape (B, N, 3)", "(2, 3, 10)", ".transpose(1, 2).contiguous()"]),
    ("knn-last-dim", lambda: ops.knn(torch.rand(2, 5, 2), XYZ, 2),
     ["`query` must have shape (B, N, 3)"]),
    ("group-idx-rank", lambda: ops.group_points(FEATURES, IDX2),
     ["`idx` must have shape (B, M, K)", "(2, 5)"]),
    ("gather-features-rank", lambda: ops.gather_points(torch.rand(4, 10), IDX2),
     ["`features` must have shape (B, C, N)"]),
    # dtypes
    ("fps-int-coords", lambda: ops.furthest_point_sample(INT_XYZ, 2),
     ["`xyz` must be a floating-point tensor", "torch.int64", ".float()"]),
    ("group-int-features", lambda: ops.group_points(torch.ones(2, 4, 10, dtype=torch.int32), IDX3),
     ["`features` must be a floating-point tensor", "torch.int32"]),
    ("gather-float-idx", lambda: ops.gather_points(FEATURES, IDX2.float()),
     ["`idx` must be an int32 or int64 index tensor", "torch.float32", ".int()"]),
    ("interp-int-weight", lambda: ops.three_interpolate(FEATURES, IDX3, IDX3),
     ["`weight` must be a floating-point tensor"]),
    # devices
    ("ball-query-devices", lambda: ops.ball_query(0.1, 4, XYZ, XYZ.to("meta")),
     ["`new_xyz` is on meta but `xyz` is on cpu", "same device"]),
    ("group-devices", lambda: ops.group_points(FEATURES, IDX3.to("meta")),
     ["`idx` is on meta but `features` is on cpu"]),
    # contiguity
    ("fps-non-contiguous", lambda: ops.furthest_point_sample(CHANNELS_FIRST.transpose(1, 2), 2),
     ["`xyz` is not contiguous", "call .contiguous()"]),
    ("group-non-contiguous-features",
     lambda: ops.group_points(torch.rand(2, 10, 4).transpose(1, 2), IDX3),
     ["`features` is not contiguous", "call .contiguous()"]),
    ("gather-non-contiguous-idx", lambda: ops.gather_points(FEATURES, IDX3[:, :, 0]),
     ["`idx` is not contiguous", "call .contiguous()"]),
    # counts and radius
    ("fps-npoint-too-large", lambda: ops.furthest_point_sample(XYZ, 11),
     ["`npoint` (11) must not exceed the number of points N (10)"]),
    ("fps-npoint-zero", lambda: ops.furthest_point_sample(XYZ, 0),
     ["`npoint` must be positive, got 0"]),
    ("fps-npoint-negative", lambda: ops.furthest_point_sample(XYZ, -3),
     ["`npoint` must be positive, got -3"]),
    ("fps-npoint-float", lambda: ops.furthest_point_sample(XYZ, 2.5),
     ["`npoint` must be an int, got float"]),
    ("ball-query-nsample-zero", lambda: ops.ball_query(0.1, 0, XYZ, XYZ),
     ["`nsample` must be positive, got 0"]),
    ("ball-query-radius-zero", lambda: ops.ball_query(0.0, 4, XYZ, XYZ),
     ["`radius` must be positive and finite, got 0.0"]),
    ("ball-query-radius-negative", lambda: ops.ball_query(-1, 4, XYZ, XYZ),
     ["`radius` must be positive and finite, got -1.0"]),
    ("ball-query-radius-nan", lambda: ops.ball_query(float("nan"), 4, XYZ, XYZ),
     ["`radius` must be positive and finite"]),
    ("knn-k-too-large", lambda: ops.knn(XYZ, XYZ, 11),
     ["`k` (11) must not exceed the number of support points N (10)"]),
    ("knn-k-zero", lambda: ops.knn(XYZ, XYZ, 0), ["`k` must be positive, got 0"]),
    # empty clouds
    ("fps-empty-batch", lambda: ops.furthest_point_sample(torch.rand(0, 10, 3), 1),
     ["`xyz` is empty", "(0, 10, 3)", "B >= 1"]),
    ("fps-no-points", lambda: ops.furthest_point_sample(torch.rand(2, 0, 3), 1),
     ["`xyz` is empty", "N >= 1"]),
    ("three-nn-no-known", lambda: ops.three_nn(XYZ, torch.rand(2, 0, 3)),
     ["`known` is empty"]),
    ("group-no-points", lambda: ops.group_points(torch.rand(2, 4, 0), IDX3),
     ["`features` is empty"]),
    # shape mismatches
    ("ball-query-batch", lambda: ops.ball_query(0.1, 4, XYZ, torch.rand(3, 5, 3)),
     ["`new_xyz` has size 3 in dim 0 but the batch size of `xyz` is 2"]),
    ("interp-weight-shape", lambda: ops.three_interpolate(FEATURES, IDX3, torch.rand(2, 4, 3)),
     ["`weight` has shape (2, 4, 3) but `idx` has (2, 5, 3)"]),
    ("interp-idx-not-3", lambda: ops.three_interpolate(FEATURES, IDX3[..., :2].contiguous(),
                                                        WEIGHT[..., :2].contiguous()),
     ["`idx` has size 2 in dim 2 but the number of neighbours is 3"]),
    ("group-backward-shape", lambda: ops.group_points_backward(torch.rand(2, 4, 5, 2), IDX3, 10),
     ["`idx` has size 3 in dim 2 but K of `grad_out` (dim 3) is 2"]),
    ("gather-backward-n", lambda: ops.gather_points_backward(torch.rand(2, 4, 5), IDX2, 0),
     ["`n` must be positive, got 0"]),
    # module
    ("query-and-group-no-features",
     lambda: pointnet2_utils.QueryAndGroup(0.2, 4, use_xyz=False)(XYZ, XYZ),
     ["`features` is None but use_xyz=False"]),
    *_splat_cases("rasterize", ops.rasterize_points),
    *_splat_cases("splat-weighted", ops.splat_weighted_depth),
]


@pytest.mark.parametrize("call,fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_argument_raises_with_clear_message(backend, call, fragments):
    with pytest.raises(PointOpsInputError) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    assert message.count(";") <= 1 and "\n" not in message  # one sentence


def test_error_is_a_value_error():
    assert issubclass(PointOpsInputError, ValueError)


BAD = {"high": 10, "negative": -1, "int64-wrap": 2**32}  # 2**32 would wrap to 0 as int32

# op id -> (call with an index tensor, what the indices count in the message)
INDEX_OPS = {
    "gather": (lambda i: ops.gather_points(FEATURES, i[..., 0].contiguous()), "the N points of `features`"),
    "gather-backward": (lambda i: ops.gather_points_backward(torch.rand(2, 4, 5), i[..., 0].contiguous(), 10),
                        "the `n` points"),
    "group": (lambda i: ops.group_points(FEATURES, i), "the N points of `features`"),
    "group-backward": (lambda i: ops.group_points_backward(torch.rand(2, 4, 5, 3), i, 10), "the `n` points"),
    "interpolate": (lambda i: ops.three_interpolate(FEATURES, i, WEIGHT), "the m known points of `features`"),
    "interpolate-backward": (lambda i: ops.three_interpolate_backward(torch.rand(2, 4, 5), i, WEIGHT, 10),
                             "the `m` known points"),
}


@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
@pytest.mark.parametrize("op,counted", INDEX_OPS.values(), ids=INDEX_OPS.keys())
def test_out_of_range_index_is_rejected_before_any_kernel(backend, op, counted, bad):
    idx = IDX3.long()
    idx[1, 3, 0] = bad
    with pytest.raises(IndexError) as info:
        op(idx)
    assert isinstance(info.value, PointOpsIndexError) and isinstance(info.value, PointOpsInputError)
    assert str(info.value) == f"`idx` holds index {bad}, out of range [0, 10) for {counted}; pass indices in [0, 10)."


# Calls the compiled kernel directly (no Python-side check) in a fresh interpreter, so that a
# crash (the segfault seen on an H200 toolchain) fails this test with its signal instead of
# killing pytest. Prints one JSON line per call: the Python exception type and message.
_KERNEL_CHILD = """
import json, torch
from pointnet2_ops import _native
features = torch.rand(2, 4, 10)
calls = {
    "index": lambda: _native._C.group_points(features, torch.full((2, 5, 3), 10, dtype=torch.int32)),
    "check": lambda: _native._C.knn(torch.rand(2, 5, 3), torch.rand(2, 10, 3), 0),
}
for name, call in calls.items():
    try:
        call()
        print(json.dumps([name, None, ""]))
    except Exception as exc:
        print(json.dumps([name, type(exc).__name__, str(exc)]))
print(json.dumps(["alive", None, ""]))
"""


def test_cpu_kernel_errors_reach_python_as_exceptions(ext):
    proc = subprocess.run([sys.executable, "-c", _KERNEL_CHILD], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kernel call killed the interpreter (status {proc.returncode}): {proc.stderr[-2000:]}"
    results = {name: (kind, message) for name, kind, message in map(json.loads, proc.stdout.splitlines())}
    assert results["index"][0] == "IndexError" and "index 10 is out of range [0, 10)" in results["index"][1]
    assert results["check"][0] == "RuntimeError" and "k must be in [1, N]" in results["check"][1]
    assert "Exception raised from" not in results["index"][1]  # no C++ backtrace in the message
    assert "alive" in results
