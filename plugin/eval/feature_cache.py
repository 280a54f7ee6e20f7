"""Cached features: ``features_<split>.npz`` with ``features``, ``labels`` and the ``fingerprint`` of what made them.

A cache is reused only when its fingerprint (a hash of the encoder, weights, pooling and data config)
equals the current one, so a stale file is never mistaken for the current features.
"""
import hashlib
import json
import os
import zipfile
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..engine import atomic_io


def fingerprint(parts: Dict[str, Any]) -> str:
    """A SHA-256 hex digest of the JSON of ``parts`` (sorted keys; non-JSON values by ``str``)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def file_digest(path: str) -> str:
    """SHA-256 hex digest of the contents of file ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_features(path: str, features: np.ndarray, labels: np.ndarray, key: str) -> None:
    """Write ``features`` (N,C), ``labels`` (N,) and fingerprint ``key`` to ``path`` atomically."""
    atomic_io.save_npz(path, features=features, labels=labels, fingerprint=np.array(key))


def load_features(path: str, key: str) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """``(features, labels)`` of ``path`` if it exists, is readable and has fingerprint ``key``; else ``None``."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path) as cache:
            if "fingerprint" not in cache.files or str(cache["fingerprint"]) != key:
                return None
            return cache["features"], cache["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
