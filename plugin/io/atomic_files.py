"""Atomic file writes: write to a temporary file in the same folder, then rename over the target.

A run killed mid-write therefore never leaves a partial checkpoint or metrics file behind. Files get
the permissions the user's umask gives new files (``0o666 & ~umask``), not ``mkstemp``'s 0600.

A write that the file system refuses (a read-only folder, a path through a regular file, a full
disk) raises :class:`OutputNotWritableError`: one sentence naming the path, the config key that
chose it and the bytes free there. ``torch.save`` checks the free space against the tensor bytes of
the state first, so a checkpoint that cannot fit is refused before anything is written.
"""
import contextlib
import json
import math
import os
import shutil
import tempfile
from typing import IO, Any, Callable, Iterator

import numpy as np
import torch

from ..errors import UserError


class OutputNotWritableError(UserError, OSError):
    """An output file or folder cannot be written; the message names the key that chose its location."""


def free_bytes(path: str) -> int:
    """Free bytes on the file system of ``path``, or of its nearest existing parent."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


@contextlib.contextmanager
def writing(path: str, config_key: str = "root_dir") -> Iterator[None]:
    """Turn an ``OSError`` raised in the block into :class:`OutputNotWritableError` about ``path``.

    Args:
        path: the file or folder being written.
        config_key: the config key (or option) that chose where ``path`` lies, named in the message.
    """
    try:
        yield
    except UserError:
        raise
    except OSError as error:
        reason = error.strerror or str(error)
        raise OutputNotWritableError(f"Cannot write '{path}' ({reason}): choose a writable {config_key}; "
                                     f"{free_bytes(path)} bytes free there.") from error


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: str, write: Callable[[str], None], config_key: str) -> None:
    with writing(path, config_key):
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
        try:
            os.fchmod(fd, 0o666 & ~_umask())
            os.close(fd)
            write(tmp)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise


def _atomic_dump(path: str, mode: str, dump: Callable[[IO], object], config_key: str) -> None:
    """:func:`_atomic_write` through ``dump(file)``, ``file`` the temporary file opened with ``mode``."""
    def write(tmp: str) -> None:
        with open(tmp, mode) as f:
            dump(f)

    _atomic_write(path, write, config_key)


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in ``obj`` (nested dicts, lists and tuples): what a checkpoint of it needs at least."""
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(value) for value in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(value) for value in obj)
    return 0


def save_torch(obj: Any, path: str, config_key: str = "root_dir") -> None:
    """``torch.save`` ``obj`` to ``path`` atomically, refusing it first when its tensors cannot fit.

    Args:
        obj: the state (tensors, plain containers, numbers, strings).
        path: the target file.
        config_key: the config key that chose where ``path`` lies, named in errors.
    """
    needed, free = tensor_bytes(obj), free_bytes(path)
    if needed > free:
        raise OutputNotWritableError(f"Cannot write '{path}' (it needs at least {needed} bytes): choose a writable "
                                     f"{config_key} with more space; {free} bytes free there.")

    def write(tmp: str) -> None:
        try:
            torch.save(obj, tmp)
        except RuntimeError as error:  # torch's file writer reports a failed write (e.g. a full disk) this way
            raise OSError(f"torch.save failed: {str(error).splitlines()[0]}") from error

    _atomic_write(path, write, config_key)


def _finite(obj: Any) -> Any:
    """``obj`` with NaN and infinite floats replaced by None (JSON has no literal for them)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def save_json(obj: Any, path: str, config_key: str = "root_dir") -> None:
    """Write ``obj`` as indented, strictly valid JSON to ``path`` atomically; NaN and infinities become null.

    Args:
        obj: plain data (dicts, lists, numbers, strings, None).
        path: the target file.
        config_key: the config key that chose where ``path`` lies, named in errors.
    """
    def dump(f: IO) -> None:
        json.dump(_finite(obj), f, indent=2, sort_keys=True, allow_nan=False)
        f.write("\n")

    _atomic_dump(path, "w", dump, config_key)


def save_text(text: str, path: str, config_key: str = "root_dir") -> None:
    """Write ``text`` to ``path`` atomically.

    Args:
        text: the content.
        path: the target file.
        config_key: the config key that chose where ``path`` lies, named in errors.
    """
    _atomic_dump(path, "w", lambda f: f.write(text), config_key)


def save_figure(figure: Any, path: str, dpi: int = 100, config_key: str = "root_dir") -> None:
    """Save a matplotlib ``Figure`` to ``path`` atomically, in the format of its extension (``.png``, ``.pdf``).

    Args:
        figure: the figure.
        path: the target file.
        dpi: resolution of raster formats.
        config_key: the config key that chose where ``path`` lies, named in errors.
    """
    extension = os.path.splitext(path)[1].lstrip(".") or "png"
    _atomic_dump(path, "wb", lambda f: figure.savefig(f, format=extension, dpi=dpi), config_key)


def save_npz(path: str, config_key: str = "root_dir", **arrays: Any) -> None:
    """``np.savez`` the named ``arrays`` to ``path`` atomically.

    Args:
        path: the target file.
        config_key: the config key that chose where ``path`` lies, named in errors.
        **arrays: name -> array.
    """
    _atomic_dump(path, "wb", lambda f: np.savez(f, **arrays), config_key)


def save_npy(array: Any, path: str, config_key: str = "root_dir") -> None:
    """``np.save`` ``array`` to ``path`` atomically.

    Args:
        array: the array.
        path: the target file.
        config_key: the config key that chose where ``path`` lies, named in errors.
    """
    _atomic_dump(path, "wb", lambda f: np.save(f, array), config_key)
