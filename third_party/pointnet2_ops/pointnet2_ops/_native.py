"""Loads the compiled extension ``pointnet2_ops._C`` and selects the backend.

The backend is chosen once, at import: ``native`` when the extension imports, ``reference``
(pure PyTorch) when it is missing or when ``POINTNET2_OPS_BACKEND=reference`` is set. In the
reference case one warning is emitted per process.
"""

from __future__ import annotations

import importlib
import os
import types
import warnings

import torch

from . import reference

BACKEND_ENV = "POINTNET2_OPS_BACKEND"
CI_ENV = "CI"
BUILD_HINT = (
    "build them with `make install` or "
    "`.venv/bin/pip install --no-build-isolation -e third_party/pointnet2_ops`"
)


def _load_extension() -> tuple[types.ModuleType | None, str]:
    """Return ``(extension, reason)``; the reason says why the extension is not used."""
    requested = os.environ.get(BACKEND_ENV, "").strip().lower()
    if requested == "reference":
        return None, f"native ops disabled by {BACKEND_ENV}=reference"
    try:
        return importlib.import_module(f"{__package__}._C"), ""
    except ModuleNotFoundError:
        return None, f"native ops not built: {__package__}._C is missing"
    except (ImportError, OSError) as exc:  # built, but against another torch/toolchain
        return None, f"native ops failed to load: {exc}"


_C, _reason = _load_extension()
if _C is None:
    warnings.warn(
        f"pointnet2_ops: using the slow pure-PyTorch reference ops ({_reason}); "
        f"to use the native ops, {BUILD_HINT}.",
        RuntimeWarning,
        stacklevel=2,
    )
_warned_cuda = False


def backend() -> str:
    """Return ``"native"`` when the compiled kernels are in use, else ``"reference"``."""
    return "reference" if _C is None else "native"


def has_cuda_kernels() -> bool:
    """Return whether the compiled extension includes the CUDA kernels."""
    return _C is not None and bool(_C.with_cuda())


def ci_gate_failure() -> str | None:
    """Return the sentence that fails a CI run without the native ops, else None.

    Under ``CI`` set to ``true``/``1``/``yes`` (what CI services export) the reference fallback is
    an error, so that a broken native build cannot turn every native-kernel test into a skip.
    A user's install keeps the fallback with its one warning.

    Returns:
        One sentence naming the cause and the fix, or None when the gate passes.
    """
    if os.environ.get(CI_ENV, "").strip().lower() not in ("1", "true", "yes") or _C is not None:
        return None
    return (
        f"CI={os.environ[CI_ENV]} requires the native pointnet2_ops kernels, but {_reason}; "
        f"{BUILD_HINT} (add -v to see the compiler error), or unset CI to accept the reference ops."
    )


def kernels_for(tensor: torch.Tensor) -> types.ModuleType:
    """Return the module implementing the kernel-level ops for ``tensor``'s device.

    Args:
        tensor: an input of the op; its device selects the kernels.

    Returns:
        ``pointnet2_ops._C`` for CPU tensors (and CUDA tensors when the CUDA kernels are
        built), otherwise :mod:`pointnet2_ops.reference`.
    """
    global _warned_cuda
    if _C is None:
        return reference
    if tensor.device.type == "cpu" or (tensor.device.type == "cuda" and has_cuda_kernels()):
        return _C
    if tensor.device.type == "cuda" and not _warned_cuda:
        _warned_cuda = True
        warnings.warn(
            "pointnet2_ops: the CUDA kernels are not built, so CUDA tensors use the slow "
            f"reference ops; to build them, install a CUDA toolkit and {BUILD_HINT}.",
            RuntimeWarning,
            stacklevel=3,
        )
    return reference
