"""Atomic file writes: write to a temporary file in the same folder, then rename over the target.

A run killed mid-write therefore never leaves a partial checkpoint or metrics file behind.
"""
import json
import os
import tempfile
from typing import Any, Callable

import torch


def _atomic_write(path: str, write: Callable[[str], None]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_torch(obj: Any, path: str) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    _atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_json(obj: Any, path: str) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")

    _atomic_write(path, write)


def save_text(text: str, path: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    _atomic_write(path, write)


def save_npz(path: str, **arrays: Any) -> None:
    """``np.savez`` the named ``arrays`` to ``path`` atomically."""
    import numpy as np

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    _atomic_write(path, write)
