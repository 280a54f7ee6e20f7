"""Backend selection: native by default, reference via POINTNET2_OPS_BACKEND, one warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

import pointnet2_ops
from pointnet2_ops import ops

# Runs in a fresh interpreter: imports the package with warnings recorded, then runs the ops
# on a fixed cloud and prints everything as JSON.
_CHILD = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import pointnet2_ops
    from pointnet2_ops import ops
    import torch
    xyz = torch.rand(2, 64, 3, generator=torch.Generator().manual_seed(3))
    results = {
        "fps": ops.furthest_point_sample(xyz, 16).tolist(),
        "ball_query": ops.ball_query(0.3, 8, xyz, xyz[:, :16].contiguous()).tolist(),
        "knn": ops.knn(xyz, xyz, 4)[1].tolist(),
    }
    ops.furthest_point_sample(xyz, 4)  # a second call must not warn again
messages = [str(w.message) for w in caught if "pointnet2_ops" in str(w.message)]
print(json.dumps({"backend": pointnet2_ops.backend(), "warnings": messages, **results}))
"""


def _run_child(**env: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _expected() -> dict:
    xyz = torch.rand(2, 64, 3, generator=torch.Generator().manual_seed(3))
    return {
        "fps": ops.furthest_point_sample(xyz, 16).tolist(),
        "ball_query": ops.ball_query(0.3, 8, xyz, xyz[:, :16].contiguous()).tolist(),
        "knn": ops.knn(xyz, xyz, 4)[1].tolist(),
    }


def test_reference_backend_env_var_warns_once_and_matches(ext):
    child = _run_child(POINTNET2_OPS_BACKEND="reference")
    assert child["backend"] == "reference"
    assert len(child["warnings"]) == 1
    message = child["warnings"][0]
    assert "POINTNET2_OPS_BACKEND=reference" in message
    assert "make install" in message and "pip install --no-build-isolation -e" in message
    for key, value in _expected().items():
        assert child[key] == value, key


def test_native_backend_is_default_and_silent(ext):
    child = _run_child(POINTNET2_OPS_BACKEND="")
    assert child["backend"] == "native"
    assert child["warnings"] == []


def test_backend_reports_native_when_built(ext):
    assert pointnet2_ops.backend() == "native"
    assert pointnet2_ops.has_cuda_kernels() == bool(ext.with_cuda())


def test_reference_fixture_switches_backend(backend):
    assert pointnet2_ops.backend() == backend


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


GATE = "CI=true requires the native pointnet2_ops kernels, but native ops disabled by POINTNET2_OPS_BACKEND=reference"


def test_ci_gate_fails_pytest_without_native_ops():
    # A cheap test id: the gate stops the session before collection, so it never runs.
    cheap = "tests/ops/test_backend.py::test_backend_reports_native_when_built"
    proc = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", cheap], CI="true", POINTNET2_OPS_BACKEND="reference")
    assert proc.returncode == 4, proc.stdout + proc.stderr  # pytest.ExitCode.USAGE_ERROR
    out = proc.stdout + proc.stderr
    assert GATE in out and "passed" not in out and "skipped" not in out, out


def test_ci_gate_in_the_install_check(ext):
    failed = _run(["-m", "pointnet2_ops"], CI="true", POINTNET2_OPS_BACKEND="reference")
    assert failed.returncode == 1 and GATE in failed.stderr and "backend: reference" in failed.stdout
    user = _run(["-m", "pointnet2_ops"], CI="", POINTNET2_OPS_BACKEND="reference")  # a user's install falls back
    assert user.returncode == 0 and "RuntimeWarning" in user.stderr and "backend: reference" in user.stdout
    native = _run(["-m", "pointnet2_ops"], CI="true", POINTNET2_OPS_BACKEND="")
    assert native.returncode == 0 and "backend: native" in native.stdout, native.stderr
