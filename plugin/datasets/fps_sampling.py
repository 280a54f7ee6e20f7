"""Farthest point downsampling of whole splits on CPU, cached in memory and, where possible, on disk.

The disk cache is a ``.npy`` next to the source file (or under the user cache), valid while it is at
least as new as the source and has the expected shape; it is written atomically and optionally
(:func:`plugin.io.write_optional`: a refused write only warns)."""
import hashlib
import logging
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from ..io import save_npy, write_optional
from ..ops import pointnet2_utils

LOGGER = logging.getLogger(__name__)  # a child of the run's "plugin" logger

CACHE_HOME = Path("~/.cache/openpoints-plugin")

# (resolved source path, its mtime in ns, its size, num_points) -> downsampled clouds
_MEMORY: Dict[Tuple[str, int, int, int], np.ndarray] = {}


def fps_downsample(points: np.ndarray, num_points: int, batch_size: int = 64) -> np.ndarray:
    """Keep ``num_points`` of each cloud by farthest point sampling, in sampling order from point 0.

    Args:
        points: clouds (B, N, C), float32; the first three channels are xyz.
        num_points: points to keep per cloud.
        batch_size: clouds per call to ``pointnet2_ops``.
    Returns:
        (B, num_points, C) clouds.
    """
    out = np.empty((len(points), num_points, points.shape[2]), dtype=points.dtype)
    with tqdm(total=len(points), desc="FPS", unit="cloud", disable=None) as bar, torch.no_grad():
        for start in range(0, len(points), batch_size):
            chunk = points[start:start + batch_size]
            xyz = torch.from_numpy(np.ascontiguousarray(chunk[..., :3], dtype=np.float32))
            idx = pointnet2_utils.furthest_point_sample(xyz, num_points).long().numpy()
            out[start:start + len(chunk)] = np.take_along_axis(chunk, idx[..., None], axis=1)
            bar.update(len(chunk))
    return out


def cached_fps_downsample(points: np.ndarray, num_points: int, source: Path, to_disk: bool = True) -> np.ndarray:
    """:func:`fps_downsample` of ``points`` read from file ``source``, computed once per file version.

    Args:
        points: the clouds stored in ``source``, (B, N, C).
        num_points: points to keep per cloud.
        source: the file ``points`` came from; its path, mtime and size key the caches.
        to_disk: also keep the result as ``.npy`` next to ``source`` when that folder is writable,
            else under ``~/.cache/openpoints-plugin/``; a cache older than ``source`` is ignored.
    """
    stat = source.stat()
    key = (str(source.resolve()), stat.st_mtime_ns, stat.st_size, num_points)
    if key in _MEMORY:
        return _MEMORY[key]
    expected = (len(points), num_points, points.shape[2])
    result = _load_disk_cache(source, num_points, expected) if to_disk else None
    if result is None:
        result = fps_downsample(points, num_points)
        if to_disk:
            _save_disk_cache(result, cache_path(source, num_points))
    _MEMORY[key] = result
    return result


def cache_paths(source: Path, num_points: int) -> Tuple[Path, Path]:
    """The two places the FPS cache of ``source`` may live: next to it, and under the user cache."""
    digest = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:12]
    return (source.parent / f"{source.stem}_fps{num_points}.npy",
            CACHE_HOME.expanduser() / f"{source.stem}_{digest}_fps{num_points}.npy")


def cache_path(source: Path, num_points: int) -> Path:
    """Where the FPS cache of ``source`` is written: next to it if that folder is writable, else the user cache."""
    local, user = cache_paths(source, num_points)
    return local if os.access(source.parent, os.W_OK) else user


def _load_disk_cache(source: Path, num_points: int, expected: Tuple[int, ...]) -> Optional[np.ndarray]:
    """Return the cached clouds if a cache at least as new as ``source`` with shape ``expected`` exists."""
    for path in cache_paths(source, num_points):
        if path.is_file() and path.stat().st_mtime_ns >= source.stat().st_mtime_ns:
            try:
                cached = np.load(path)
            except (OSError, ValueError):
                continue
            if cached.shape == expected:
                LOGGER.info("Loaded FPS cache %s", path)
                return cached
    return None


def _save_disk_cache(clouds: np.ndarray, path: Path) -> None:
    """Write ``clouds`` to ``path`` atomically with the user's umask; a failure only logs a warning (the cache
    is optional)."""
    if write_optional(lambda: save_npy(clouds, str(path), "dataset.common.data_dir"), f"FPS cache {path}"):
        LOGGER.info("Saved FPS cache %s", path)
