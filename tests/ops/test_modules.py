"""QueryAndGroup and GroupAll: shapes and values against a manual computation."""

from __future__ import annotations

import pytest
import torch

from pointnet2_ops import pointnet2_utils as pu


def _manual_group(xyz, new_xyz, features, radius, nsample):
    idx = pu.ball_query(radius, nsample, xyz, new_xyz).long()  # (B, M, K)
    batch = torch.arange(xyz.shape[0])[:, None, None]
    rel = (xyz[batch, idx] - new_xyz[:, :, None]).permute(0, 3, 1, 2)  # (B, 3, M, K)
    feats = features.transpose(1, 2)[batch, idx].permute(0, 3, 1, 2)  # (B, C, M, K)
    return rel, feats


@pytest.fixture
def cloud(gen):
    xyz = torch.rand(2, 64, 3, generator=gen)
    new_xyz = xyz[:, :16].contiguous()
    features = torch.randn(2, 5, 64, generator=gen)
    return xyz, new_xyz, features


def test_query_and_group_with_features(backend, cloud):
    xyz, new_xyz, features = cloud
    out = pu.QueryAndGroup(0.3, 8)(xyz, new_xyz, features)
    assert out.shape == (2, 3 + 5, 16, 8)
    rel, feats = _manual_group(xyz, new_xyz, features, 0.3, 8)
    torch.testing.assert_close(out, torch.cat([rel, feats], dim=1))


def test_query_and_group_without_xyz(backend, cloud):
    xyz, new_xyz, features = cloud
    out = pu.QueryAndGroup(0.3, 8, use_xyz=False)(xyz, new_xyz, features)
    assert out.shape == (2, 5, 16, 8)
    torch.testing.assert_close(out, _manual_group(xyz, new_xyz, features, 0.3, 8)[1])


def test_query_and_group_xyz_only(backend, cloud):
    xyz, new_xyz, features = cloud
    out = pu.QueryAndGroup(0.3, 8)(xyz, new_xyz)
    assert out.shape == (2, 3, 16, 8)
    torch.testing.assert_close(out, _manual_group(xyz, new_xyz, features, 0.3, 8)[0])


def test_query_and_group_backpropagates_to_features(backend, cloud):
    xyz, new_xyz, features = cloud
    features = features.clone().requires_grad_()
    pu.QueryAndGroup(0.3, 8)(xyz, new_xyz, features).sum().backward()
    assert features.grad.shape == features.shape


@pytest.mark.parametrize("use_xyz", [True, False])
def test_group_all(backend, cloud, use_xyz):
    xyz, new_xyz, features = cloud
    out = pu.GroupAll(use_xyz)(xyz, new_xyz, features)
    want = features.unsqueeze(2)
    if use_xyz:
        want = torch.cat([xyz.transpose(1, 2).unsqueeze(2), want], dim=1)
    assert out.shape == (2, (3 if use_xyz else 0) + 5, 1, 64)
    torch.testing.assert_close(out, want)


def test_group_all_xyz_only(backend, cloud):
    xyz, _, _ = cloud
    out = pu.GroupAll()(xyz, None)
    assert out.shape == (2, 3, 1, 64)
    torch.testing.assert_close(out, xyz.transpose(1, 2).unsqueeze(2))
