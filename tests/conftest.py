"""Shared fixtures: the real data beside the project, and small helpers."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def modelnet_dir() -> Path:
    """The real 3-class ModelNet40 subset in ../shared/data; skips when absent."""
    path = SHARED_DATA / "modelnet40_normal_resampled"
    if not (path / "modelnet40_shape_names.txt").is_file():
        pytest.skip(f"real data not found at {path} (../shared/data is only present beside the project)")
    return path
