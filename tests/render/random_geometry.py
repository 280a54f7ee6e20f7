"""Seeded random clouds and rotations for the render tests."""

from __future__ import annotations

import torch


def random_rotations(gen: torch.Generator, count: int, dtype: torch.dtype) -> torch.Tensor:
    """(count, 3, 3) random proper rotations (QR of Gaussian matrices, det +1)."""
    q, r = torch.linalg.qr(torch.randn(count, 3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    q[torch.linalg.det(q) < 0, :, 0] *= -1
    return q.to(dtype)


def unit_ball_clouds(gen: torch.Generator, b: int, n: int, dtype: torch.dtype) -> torch.Tensor:
    """(b, n, 3) points uniform in the unit ball (a unit-sphere-normalised object's extent)."""
    direction = torch.randn(b, n, 3, generator=gen, dtype=torch.float64)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    radius = torch.rand(b, n, 1, generator=gen, dtype=torch.float64) ** (1 / 3)
    return (direction * radius).to(dtype)
