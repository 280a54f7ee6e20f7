"""Cached features: ``features_<split>.npz`` with ``features``, ``labels`` and the ``fingerprint`` of what made them.

A record of the fingerprinted cache (:mod:`plugin.io.file_cache`): it is reused only when its
fingerprint (a hash of the encoder, weights, pooling and data config) equals the current one, so a
stale file is never mistaken for the current features.
"""
from typing import Optional, Tuple

import numpy as np

from ..io import read_record, write_record


def save_features(path: str, features: np.ndarray, labels: np.ndarray, key: str,
                  config_key: str = "root_dir") -> None:
    """Write ``features`` (N,C), ``labels`` (N,) and fingerprint ``key`` to ``path`` atomically.

    Args:
        path: the ``.npz`` file.
        features: one feature vector per sample.
        labels: one class per sample.
        key: the fingerprint of what made the features (:func:`plugin.io.fingerprint`).
        config_key: the config key that chose where ``path`` lies, named in errors.
    """
    write_record(path, {"features": features, "labels": labels}, key, config_key)


def load_features(path: Optional[str], key: str) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """``(features, labels)`` of ``path`` if it exists, is readable and has fingerprint ``key``; else ``None``.

    Args:
        path: the ``.npz`` file.
        key: the current fingerprint.
    """
    record = read_record(path, key)
    return None if record is None else (record["features"], record["labels"])
