"""Gradients of the pointnet2_utils autograd functions, on both backends."""

from __future__ import annotations

import pytest
import torch

from pointnet2_ops import pointnet2_utils as pu


def _features(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_()


def test_gather_operation_gradcheck(backend, gen):
    features = _features(gen, 2, 3, 10)
    idx = torch.randint(0, 10, (2, 6), generator=gen, dtype=torch.int32)
    assert torch.autograd.gradcheck(pu.gather_operation, (features, idx))


def test_grouping_operation_gradcheck(backend, gen):
    features = _features(gen, 2, 3, 10)
    idx = torch.randint(0, 10, (2, 4, 5), generator=gen, dtype=torch.int32)
    assert torch.autograd.gradcheck(pu.grouping_operation, (features, idx))


def test_three_interpolate_gradcheck(backend, gen):
    features = _features(gen, 2, 3, 10)
    idx = torch.randint(0, 10, (2, 7, 3), generator=gen, dtype=torch.int32)
    weight = torch.rand(2, 7, 3, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(pu.three_interpolate, (features, idx, weight))


def test_three_interpolate_gives_no_gradient_to_weight(backend, gen):
    features = _features(gen, 1, 2, 6)
    idx = torch.randint(0, 6, (1, 4, 3), generator=gen, dtype=torch.int32)
    weight = torch.rand(1, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    pu.three_interpolate(features, idx, weight).sum().backward()
    assert features.grad is not None and weight.grad is None


def test_non_contiguous_upstream_gradient_is_accepted(backend, gen):
    features = _features(gen, 2, 3, 10)
    idx = torch.randint(0, 10, (2, 4, 5), generator=gen, dtype=torch.int32)
    grouped = pu.grouping_operation(features, idx)
    grouped.transpose(2, 3).sum(dim=2).pow(2).sum().backward()  # non-contiguous grad_out
    assert features.grad.shape == features.shape


@pytest.mark.parametrize(
    "call",
    [
        lambda xyz: pu.furthest_point_sample(xyz, 4),
        lambda xyz: pu.ball_query(0.5, 4, xyz, xyz),
        lambda xyz: pu.three_nn(xyz, xyz)[0],
        lambda xyz: pu.three_nn(xyz, xyz)[1],
        lambda xyz: pu.knn(xyz, xyz, 2)[0],
    ],
    ids=["fps", "ball_query", "three_nn_dist", "three_nn_idx", "knn"],
)
def test_index_and_distance_ops_are_not_differentiable(backend, gen, call):
    xyz = torch.rand(1, 8, 3, generator=gen, requires_grad=True)
    assert not call(xyz).requires_grad


def test_three_nn_returns_euclidean_distances(backend, gen):
    unknown = torch.rand(2, 9, 3, generator=gen)
    known = torch.rand(2, 5, 3, generator=gen)
    dist, idx = pu.three_nn(unknown, known)
    want = torch.cdist(unknown.double(), known.double()).gather(2, idx.long())
    torch.testing.assert_close(dist.double(), want, rtol=1e-5, atol=1e-6)
