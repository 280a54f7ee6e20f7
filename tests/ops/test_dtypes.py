"""Dtype handling: half/bfloat16 upcasting, float64 natively, int32/int64 indices."""

from __future__ import annotations

import pytest
import torch

from pointnet2_ops import ops

LOW_PRECISION = [torch.float16, torch.bfloat16]


def _inputs(gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "xyz": torch.rand(2, 50, 3, generator=gen),
        "features": torch.randn(2, 4, 50, generator=gen),
        "idx2": torch.randint(0, 50, (2, 12), generator=gen, dtype=torch.int32),
        "idx3": torch.randint(0, 50, (2, 12, 3), generator=gen, dtype=torch.int32),
        "weight": torch.rand(2, 12, 3, generator=gen),
        "grad2": torch.randn(2, 4, 12, generator=gen),
        "grad3": torch.randn(2, 4, 12, 3, generator=gen),
    }


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_feature_ops_match_float32_cast_back(backend, gen, dtype):
    t = _inputs(gen)
    low = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in t.items()}
    # The float32 reference is computed from the same (rounded) low-precision values.
    ref = {k: v.float() if v.is_floating_point() else v for k, v in low.items()}
    cases = [
        (ops.gather_points, ("features", "idx2")),
        (ops.gather_points_backward, ("grad2", "idx2", 50)),
        (ops.group_points, ("features", "idx3")),
        (ops.group_points_backward, ("grad3", "idx3", 50)),
        (ops.three_interpolate, ("features", "idx3", "weight")),
        (ops.three_interpolate_backward, ("grad2", "idx3", "weight", 50)),
    ]
    for fn, names in cases:
        got = fn(*(low.get(n, n) if isinstance(n, str) else n for n in names))
        want = fn(*(ref.get(n, n) if isinstance(n, str) else n for n in names)).to(dtype)
        assert got.dtype == dtype, fn.__name__
        assert torch.equal(got, want), fn.__name__


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_coordinate_ops_compute_in_float32(backend, gen, dtype):
    xyz = torch.rand(2, 60, 3, generator=gen).to(dtype)
    xyz32 = xyz.float()
    assert torch.equal(ops.furthest_point_sample(xyz, 20), ops.furthest_point_sample(xyz32, 20))
    assert torch.equal(ops.ball_query(0.3, 8, xyz, xyz), ops.ball_query(0.3, 8, xyz32, xyz32))
    for got, want in [
        (ops.three_nn(xyz, xyz), ops.three_nn(xyz32, xyz32)),
        (ops.knn(xyz, xyz, 5), ops.knn(xyz32, xyz32, 5)),
    ]:
        assert got[0].dtype == torch.float32 and got[1].dtype == torch.int32
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_float64_is_computed_natively(backend, gen):
    xyz = torch.rand(1, 30, 3, generator=gen, dtype=torch.float64)
    assert ops.three_nn(xyz, xyz)[0].dtype == torch.float64
    assert ops.knn(xyz, xyz, 3)[0].dtype == torch.float64
    features = torch.randn(1, 2, 30, generator=gen, dtype=torch.float64)
    idx = torch.zeros(1, 4, 3, dtype=torch.int32)
    assert ops.group_points(features, idx).dtype == torch.float64


def test_int64_indices_equal_int32(backend, gen):
    t = _inputs(gen)
    for fn, args in [
        (ops.gather_points, (t["features"], t["idx2"])),
        (ops.group_points, (t["features"], t["idx3"])),
        (ops.three_interpolate, (t["features"], t["idx3"], t["weight"])),
        (ops.group_points_backward, (t["grad3"], t["idx3"], 50)),
    ]:
        as_long = [a.long() if torch.is_tensor(a) and not a.is_floating_point() else a
                   for a in args]
        assert torch.equal(fn(*args), fn(*as_long)), fn.__name__


def test_mixed_float32_float64_coordinates_promote(backend, gen):
    xyz = torch.rand(1, 20, 3, generator=gen)
    dist2, _ = ops.three_nn(xyz, xyz.double())
    assert dist2.dtype == torch.float64
