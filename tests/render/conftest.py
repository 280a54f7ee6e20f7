"""Fixtures for the render tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded CPU random generator."""
    return torch.Generator().manual_seed(0)
