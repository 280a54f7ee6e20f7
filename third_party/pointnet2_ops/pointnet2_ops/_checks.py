"""Argument validation for the kernel-level ops.

Only metadata is inspected (type, dtype, shape, device, strides), so the checks cost
microseconds; the exceptions are :func:`index_range` (one min/max pass over CPU indices) and
:func:`finite` (one min/max pass over CPU values).
Each failure raises :class:`PointOpsInputError` with one sentence that names the argument and
the fix.
"""

from __future__ import annotations

import math
import numbers
import operator

import torch

from .errors import PointOpsIndexError, PointOpsInputError

_INDEX_DTYPES = (torch.int32, torch.int64)


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _tensor(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise PointOpsInputError(
            f"`{name}` must be a torch.Tensor, got {type(value).__name__}; "
            "convert it with torch.as_tensor()."
        )
    return value


def _contiguous(name: str, t: torch.Tensor) -> None:
    if not t.is_contiguous():
        raise PointOpsInputError(
            f"`{name}` is not contiguous; call .contiguous() on it before passing it."
        )


def _floating(name: str, t: torch.Tensor, what: str) -> None:
    if not t.is_floating_point():
        raise PointOpsInputError(
            f"`{name}` must be a floating-point tensor of {what}, got {t.dtype}; "
            "convert it with .float()."
        )


def _non_empty(name: str, t: torch.Tensor, points_dim: int) -> None:
    if t.shape[0] == 0 or t.shape[points_dim] == 0:
        raise PointOpsInputError(
            f"`{name}` is empty (shape {_shape(t)}); pass at least one cloud (B >= 1) "
            "with at least one point (N >= 1)."
        )


def coords(name: str, value: object) -> torch.Tensor:
    """Check a non-empty, contiguous, floating (B, N, 3) coordinate tensor.

    Args:
        name: argument name used in the error message.
        value: the argument.

    Returns:
        The argument, typed as a tensor.
    """
    t = _tensor(name, value)
    if t.dim() != 3 or t.shape[-1] != 3:
        raise PointOpsInputError(
            f"`{name}` must have shape (B, N, 3), got {_shape(t)}; pass channels-last "
            "coordinates (use .transpose(1, 2).contiguous() on (B, 3, N) ones)."
        )
    _floating(name, t, "coordinates")
    _non_empty(name, t, 1)
    _contiguous(name, t)
    return t


def finite(name: str, t: torch.Tensor) -> None:
    """Check that a CPU tensor holds no NaN or infinite value; CUDA tensors are not read (no sync).

    Like :func:`index_range`, this reads the data: one min/max pass (NaN propagates to both,
    infinities reach one), several times cheaper than ``torch.isfinite(t).all()``.

    Args:
        name: argument name used in the error message.
        t: the (already validated) non-empty floating tensor.
    """
    if t.device.type != "cpu":
        return
    low, high = (float(v) for v in torch.aminmax(t))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise PointOpsInputError(
            f"`{name}` holds NaN or infinite values; remove those points or replace the values "
            "(e.g. with torch.nan_to_num) before the call."
        )


def values(name: str, value: object, layout: str, points_dim: int | None = None) -> torch.Tensor:
    """Check a contiguous floating tensor (features, weights, gradients) of a given rank.

    Args:
        name: argument name used in the error message.
        value: the argument.
        layout: expected shape, e.g. ``"(B, C, N)"``; its number of letters is the rank.
        points_dim: dimension holding the points (N); when given, B or N == 0 is rejected.

    Returns:
        The argument, typed as a tensor.
    """
    t = _tensor(name, value)
    rank = layout.count(",") + 1
    if t.dim() != rank:
        raise PointOpsInputError(
            f"`{name}` must have shape {layout} ({rank} dims), got {_shape(t)}; reshape it."
        )
    _floating(name, t, "values")
    if points_dim is not None:
        _non_empty(name, t, points_dim)
    _contiguous(name, t)
    return t


def index(name: str, value: object, layout: str) -> torch.Tensor:
    """Check a contiguous int32/int64 index tensor of a given rank.

    Args:
        name: argument name used in the error message.
        value: the argument.
        layout: expected shape, e.g. ``"(B, M, K)"``.

    Returns:
        The argument, typed as a tensor.
    """
    t = _tensor(name, value)
    rank = layout.count(",") + 1
    if t.dim() != rank:
        raise PointOpsInputError(
            f"`{name}` must have shape {layout} ({rank} dims), got {_shape(t)}; reshape it."
        )
    if t.dtype not in _INDEX_DTYPES:
        raise PointOpsInputError(
            f"`{name}` must be an int32 or int64 index tensor, got {t.dtype}; "
            "convert it with .int()."
        )
    _contiguous(name, t)
    return t


def index_range(name: str, idx: torch.Tensor, n: int, n_name: str) -> None:
    """Check that a CPU index tensor lies in ``[0, n)``; CUDA indices are not read (no sync).

    This is the one check that reads data (one min/max pass). It runs before any kernel, so an
    out-of-range index never reaches the C++ kernels' own guard, whose C++ exception would have
    to cross the binding layer.

    Args:
        name: argument name used in the error message.
        idx: the (already validated) index tensor.
        n: number of indexable entries.
        n_name: what ``n`` counts, e.g. ``"the N points of `features`"``.
    """
    if idx.device.type != "cpu" or idx.numel() == 0:
        return
    low, high = (int(v) for v in torch.aminmax(idx))
    if low < 0 or high >= n:
        raise PointOpsIndexError(
            f"`{name}` holds index {low if low < 0 else high}, out of range [0, {n}) for "
            f"{n_name}; pass indices in [0, {n})."
        )


def same_device(**tensors: torch.Tensor) -> None:
    """Check that all named tensors live on one device.

    Args:
        **tensors: the tensors, keyed by argument name.
    """
    (first, ref), *rest = tensors.items()
    for name, t in rest:
        if t.device != ref.device:
            raise PointOpsInputError(
                f"`{name}` is on {t.device} but `{first}` is on {ref.device}; "
                "move them to the same device with .to()."
            )


def dims_match(name: str, t: torch.Tensor, dim: int, ref_name: str, ref_size: int) -> None:
    """Check ``t.shape[dim] == ref_size``.

    Args:
        name: name of ``t`` in the error message.
        t: the tensor to check.
        dim: the dimension of ``t`` to compare.
        ref_name: what ``ref_size`` is, e.g. ``"the batch size of `xyz`"``.
        ref_size: the expected size.
    """
    if t.shape[dim] != ref_size:
        raise PointOpsInputError(
            f"`{name}` has size {t.shape[dim]} in dim {dim} but {ref_name} is {ref_size}; "
            "pass tensors with matching shapes."
        )


def same_shape(name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    """Check that ``t`` has the shape of ``ref``.

    Args:
        name: name of ``t`` in the error message.
        t: the tensor to check.
        ref_name: name of ``ref`` in the error message.
        ref: the tensor whose shape ``t`` must have.
    """
    if t.shape != ref.shape:
        raise PointOpsInputError(
            f"`{name}` has shape {_shape(t)} but `{ref_name}` has {_shape(ref)}; "
            "pass tensors with matching shapes."
        )


def count(name: str, value: object, limit: int | None = None, limit_name: str = "") -> int:
    """Check a positive integer, optionally at most ``limit``.

    Args:
        name: argument name used in the error message.
        value: the argument.
        limit: inclusive upper bound, or None.
        limit_name: what the bound is, e.g. ``"the number of points N"``.

    Returns:
        The value as a Python int.
    """
    try:
        number = operator.index(value)
    except TypeError:
        raise PointOpsInputError(
            f"`{name}` must be an int, got {type(value).__name__}; pass an integer."
        ) from None
    if number <= 0:
        raise PointOpsInputError(f"`{name}` must be positive, got {number}; pass a value >= 1.")
    if limit is not None and number > limit:
        raise PointOpsInputError(
            f"`{name}` ({number}) must not exceed {limit_name} ({limit}); "
            f"lower `{name}` or pass a larger cloud."
        )
    return number


def positive_real(name: str, value: object) -> float:
    """Check a positive, finite real number (e.g. a radius).

    Args:
        name: argument name used in the error message.
        value: the argument.

    Returns:
        The value as a Python float.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise PointOpsInputError(
            f"`{name}` must be a real number, got {type(value).__name__}; pass a float."
        )
    number = float(value)
    if not 0.0 < number < float("inf"):
        raise PointOpsInputError(
            f"`{name}` must be positive and finite, got {number}; pass a value > 0."
        )
    return number
