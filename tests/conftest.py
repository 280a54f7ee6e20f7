"""Shared fixtures: the real data beside the project, the op backends, the ``cuda`` marker, and the CI gate;
:func:`load_tool` imports a script of ``tools/``."""
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from pointnet2_ops import _native

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def load_tool(name: str) -> ModuleType:
    """Import ``tools/<name>.py`` afresh as the module ``name``.

    The module is registered in ``sys.modules`` before it runs, as an import would: dataclasses look up
    their module's annotations there, and pickle finds the module's functions there.

    Args:
        name: the script's file name without ``.py``, e.g. ``"render_views"``.

    Returns:
        The executed module.
    """
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under CI=true a missing native extension fails the run (instead of skipping its tests)."""
    failure = _native.ci_gate_failure()
    if failure:
        pytest.exit(failure, returncode=pytest.ExitCode.USAGE_ERROR)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip ``cuda``-marked tests (marker in pytest.ini) without a GPU or without the CUDA kernels."""
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


def one_sentence(capsys: pytest.CaptureFixture) -> str:
    """The one-line error ``tools/main.py`` printed (after any progress bars), checked to be the only one."""
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and "Traceback" not in err, err
    message = err[err.index("error: "):].strip()
    assert "\n" not in message, err
    return message
