"""Fixtures for the pointnet2_ops tests (``ext`` and the ``cuda`` marker's skips live in tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded CPU random generator."""
    return torch.Generator().manual_seed(0)
