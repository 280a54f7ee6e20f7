"""Reading checkpoint files without running code from them.

``torch.load(weights_only=True)`` rebuilds only tensors, plain containers, numbers and strings:
a pickle that names any other global (``os.system``, say) is refused before anything runs, so a
checkpoint from someone else can never execute code. Everything this project writes fits that
(:func:`rng_state_for_checkpoint` stores NumPy's RNG state as a tensor). Checkpoints written
before that stored the NumPy state as a tuple with an ``ndarray`` and some figures as NumPy
scalars, and their config held OpenPoints transform objects; the NumPy globals that rebuild
arrays and scalars of plain dtypes (the ones torch documents for arrays) and OpenPoints' transform
classes (:data:`_LEGACY_GLOBALS`) are the only extra names allowed, so those files still load. Published
ULIP checkpoints store their training arguments as an ``argparse.Namespace``, a plain attribute holder,
allowed too.
"""
from __future__ import annotations

import argparse
import os
import random
import warnings
from typing import Any, Dict

import numpy as np
import torch
from openpoints.transforms.transforms_factory import Compose, DataTransforms

from ..errors import BadCheckpointError, WeightsNotFoundError

try:
    from numpy._core.multiarray import _reconstruct, scalar
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import _reconstruct, scalar

_LEGACY_NUMPY_GLOBALS = [
    np.ndarray,
    np.dtype,
    *{type(np.dtype(t)) for t in (np.uint32, np.int64, np.float32, np.float64)},  # e.g. numpy.dtypes.UInt32DType
    *[(f, f"numpy.{core}.multiarray.{f.__name__}")  # arrays and scalars, by the names NumPy 1.x and 2.x write
      for f in (_reconstruct, scalar) for core in ("core", "_core")],
]
# Checkpoints of older runs also stored, inside their config, the OpenPoints transform objects that
# OpenPoints' dataloader builder wrote into it: plain data classes rebuilt without calling any code.
_LEGACY_GLOBALS = _LEGACY_NUMPY_GLOBALS + [Compose, *DataTransforms.module_dict.values(), argparse.Namespace]
_UNPICKLER_ERROR = "WeightsUnpickler error:"  # what follows it in torch's message says what went wrong
_ALLOWED = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in _LEGACY_GLOBALS}


def _foreign_globals(path: str) -> list[str]:
    """Globals the pickle in ``path`` names beyond torch's safe set and ours, found without unpickling."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip checkpoint: torch.load below refuses it and says why
        return []
    return sorted(set(names) - _ALLOWED)


def _first_reason(err: Exception) -> str:
    """The informative line of a ``torch.load`` error (its weights-only preamble skipped), at most 120 chars."""
    text = str(err)
    text = text.split(_UNPICKLER_ERROR, 1)[-1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0]}"[:120] if lines else type(err).__name__


def read_checkpoint(path: str | os.PathLike | None, key: str, hint: str = "a checkpoint written by this project"
                    ) -> Dict[str, Any]:
    """The dict stored in ``path``, loaded on CPU without running code.

    Args:
        path: the checkpoint file.
        key: the config key (or command-line option) that named ``path``, for the messages.
        hint: what ``key`` should point to, for the messages.

    Raises:
        WeightsNotFoundError: ``path`` is not a file.
        BadCheckpointError: the file is not a torch checkpoint, is truncated, is not a dict, or names
            globals other than tensors and plain containers (it would run code).
    """
    if not path or not os.path.isfile(path):
        raise WeightsNotFoundError(f"Checkpoint '{path}' does not exist: set {key} to {hint}.")
    foreign = _foreign_globals(str(path))
    if foreign:
        raise BadCheckpointError(f"'{path}' names {foreign[0]}, not only tensors and plain containers, so it was "
                                 f"not loaded (unpickling it could run code): set {key} to {hint}.")
    try:
        with torch.serialization.safe_globals(_LEGACY_GLOBALS), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # a raw pickle: refused below
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file: corrupt, truncated, foreign (weights_only refuses it too)
        reason = _first_reason(err)
        raise BadCheckpointError(f"'{path}' is not a readable torch checkpoint ({reason}): set {key} to "
                                 f"{hint}.") from None
    if not isinstance(state, dict):
        raise BadCheckpointError(f"'{path}' holds a {type(state).__name__}, not a checkpoint dict: set {key} to "
                                 f"{hint}.")
    return state


def checkpoint_export(state: Dict[str, Any]) -> str | None:
    """The key of the export a checkpoint holds for downstream modes: its ``exports`` entry, written by
    pre-training since the pretext-model contract; for older checkpoints, ``depth_encoder`` or ``encoder``
    when that entry is present; None for a checkpoint without an export (a supervised run's ``model``).

    Args:
        state: the checkpoint dict (:func:`read_checkpoint`).
    """
    if state.get("exports"):
        return str(state["exports"])
    return next((key for key in ("depth_encoder", "encoder") if key in state), None)


def rng_state_for_checkpoint() -> Dict[str, Any]:
    """torch's, NumPy's and Python's global RNG states as tensors and numbers (loadable with ``weights_only``);
    Python's draws timm's RandAugment."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, words, gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
            "python": {"version": int(version), "words": torch.tensor(words, dtype=torch.int64), "gauss": gauss}}


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Set torch's, NumPy's and (when stored) Python's global RNGs from :func:`rng_state_for_checkpoint`'s dict (or
    the older NumPy tuple form)."""
    torch.set_rng_state(state["torch"])
    if "python" in state:
        python = state["python"]
        random.setstate((python["version"], tuple(int(w) for w in python["words"].tolist()), python["gauss"]))
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):
        numpy_state = ("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                       numpy_state["has_gauss"], numpy_state["cached_gaussian"])
    np.random.set_state(numpy_state)
