"""One on-disk cache for derived data: a record file that holds the fingerprint of what made it.

A record is a dict written as ``.npz`` (NumPy arrays) or ``.pt`` (tensors and plain values, read back
with ``torch.load(weights_only=True)``). It is reused only when it holds the current fingerprint under
its key field, so a stale file is never mistaken for the current data; a missing, unreadable or
foreign file is a miss, never trusted. Writes are atomic (:mod:`plugin.io.atomic_files`); a cache
that is only an optimisation is written with :func:`write_optional`, so a failed write only warns.

Users: the SVM feature cache (:mod:`plugin.eval.feature_cache`, ``.npz`` keyed ``fingerprint``), the
CLIP text classifiers (:mod:`plugin.clip.text_features`, ``.pt`` keyed ``key``) and the FPS splits
(:mod:`plugin.datasets.fps_sampling`, optional ``.npy`` writes).
"""
import hashlib
import json
import logging
import os
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
import torch

from .atomic_files import save_npz, save_torch

LOGGER = logging.getLogger("plugin")
FORMATS = (".npz", ".pt")


def fingerprint(parts: Any, sort_keys: bool = True) -> str:
    """A SHA-256 hex digest of the JSON of ``parts`` (non-JSON values by ``str``).

    Args:
        parts: what the cached data depends on (dicts, lists, numbers, strings).
        sort_keys: sort dict keys first, so their order does not matter; False hashes them in insertion
            order (the text-feature cache's keys were made so).
    """
    return hashlib.sha256(json.dumps(parts, sort_keys=sort_keys, default=str).encode()).hexdigest()


def file_digest(path: str) -> str:
    """SHA-256 hex digest of the contents of file ``path``.

    Args:
        path: the file, read in 1 MiB chunks.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _format(path: str) -> str:
    suffix = os.path.splitext(path)[1]
    if suffix not in FORMATS:
        raise ValueError(f"A cache record is {' or '.join(FORMATS)}, not '{path}'.")
    return suffix


def _read(path: str) -> Any:
    """The stored dict of ``path`` (arrays of a ``.npz`` are read into memory)."""
    if _format(path) == ".npz":
        with np.load(path) as stored:
            return {name: stored[name] for name in stored.files}
    return torch.load(path, map_location="cpu", weights_only=True)


def read_record(path: Optional[str], key: str, key_field: str = "fingerprint") -> Optional[Dict[str, Any]]:
    """The record in ``path`` if it exists, is readable and holds ``key`` under ``key_field``; else None.

    An unreadable file (corrupt, truncated, foreign) is logged as a warning and treated as a miss.

    Args:
        path: a ``.npz`` or ``.pt`` file; None is a miss.
        key: the current fingerprint.
        key_field: the record entry holding the fingerprint it was made with.
    """
    if not path or not os.path.isfile(path):
        return None
    try:
        record = _read(path)
    except Exception:  # a corrupt or foreign file is recomputed, never trusted
        LOGGER.warning(f"cache {path} is unreadable: recomputing")
        return None
    if not isinstance(record, dict) or key_field not in record or str(record[key_field]) != key:
        return None
    return record


def write_record(path: str, record: Mapping[str, Any], key: str, config_key: str,
                 key_field: str = "fingerprint") -> None:
    """Write ``record`` plus ``key`` under ``key_field`` to ``path`` atomically (``.npz`` or ``.pt``).

    Args:
        path: the target file; its suffix picks the format.
        record: the named arrays (``.npz``) or tensors and plain values (``.pt``).
        key: the fingerprint of what made the record.
        config_key: the config key that chose where ``path`` lies, named in errors.
        key_field: the entry the fingerprint is stored under.
    """
    if _format(path) == ".npz":
        save_npz(path, config_key, **record, **{key_field: np.array(key)})
    else:
        save_torch({key_field: key, **record}, path, config_key)


def write_optional(write: Callable[[], None], what: str) -> bool:
    """Run ``write`` (an atomic cache write); a file system that refuses it only logs a warning.

    Args:
        write: writes the cache file.
        what: the cache file, for the warning.

    Returns:
        Whether the cache was written.
    """
    try:
        write()
    except OSError as error:  # the cache is optional: the data is recomputed next time
        LOGGER.warning(f"{what} not cached ({error}); it will be recomputed next time.")
        return False
    return True
