"""Fixtures and the ``cuda`` marker for the pointnet2_ops tests."""

from __future__ import annotations

from types import ModuleType

import pytest
import torch

from pointnet2_ops import _native


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cuda: compares the CUDA kernels with the CPU kernels (needs a GPU)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("cuda") is None:
        return
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device available")
    if not _native.has_cuda_kernels():
        pytest.skip("pointnet2_ops was built without its CUDA kernels")


@pytest.fixture
def ext() -> ModuleType:
    """The compiled extension ``pointnet2_ops._C``; skips if it failed to build."""
    if _native._C is None:
        pytest.skip(f"native extension unavailable: {_native._reason}")
    return _native._C


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded CPU random generator."""
    return torch.Generator().manual_seed(0)
