"""Shared fixtures: the real data beside the project, the op backends, and small helpers."""
from pathlib import Path

import pytest
from pointnet2_ops import _native

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def modelnet_dir() -> Path:
    """The real 3-class ModelNet40 subset in ../shared/data; skips when absent."""
    path = SHARED_DATA / "modelnet40_normal_resampled"
    if not (path / "modelnet40_shape_names.txt").is_file():
        pytest.skip(f"real data not found at {path} (../shared/data is only present beside the project)")
    return path


@pytest.fixture(params=["native", "reference"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once per pointnet2_ops backend; the reference run hides the compiled extension."""
    if request.param == "native":
        if _native._C is None:
            pytest.skip(f"native extension unavailable: {_native._reason}")
    else:
        monkeypatch.setattr(_native, "_C", None)
    return request.param
