"""splat_weighted_depth: Eq. 8 by brute force and by hand, index parity with rasterize_points."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pointnet2_ops import ops, reference

from .test_rasterize import TINY, _random_pixels, bf_rasterize

DTYPES = [torch.float32, torch.float64]
FOOTPRINTS = [1, 2, 3, 4]


def bf_weighted(pixels: np.ndarray, height: int, width: int, footprint: int) -> np.ndarray:
    """Brute force of CLIP2Point Eq. 8 on one cloud: float64 sums in point index order."""
    num = np.zeros((height, width))
    den = np.zeros((height, width))
    for col, row, depth in pixels:
        z = float(np.float32(depth))
        if not (0 < z < np.inf and np.isfinite(col) and np.isfinite(row)):
            continue
        px, py = math.floor(col), math.floor(row)
        for r in range(py - (footprint - 1) // 2, py + footprint // 2 + 1):
            for c in range(px - (footprint - 1) // 2, px + footprint // 2 + 1):
                if 0 <= r < height and 0 <= c < width:
                    w = 1.0 / z
                    num[r, c] += w * z
                    den[r, c] += w
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.inf).astype(np.float32)


def _check_brute_force(pixels: torch.Tensor, height: int, width: int, footprint: int) -> None:
    value, index = ops.splat_weighted_depth(pixels, height, width, footprint)
    assert value.shape == index.shape == (pixels.shape[0], height, width)
    assert value.dtype == torch.float32 and index.dtype == torch.int64
    for b in range(pixels.shape[0]):
        cloud = pixels[b].double().numpy()
        np.testing.assert_array_equal(index[b].numpy(), bf_rasterize(cloud, height, width, footprint)[1])
        np.testing.assert_array_equal(value[b].numpy(), bf_weighted(cloud, height, width, footprint))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("footprint", FOOTPRINTS)
def test_tiny_cloud_matches_brute_force(backend, dtype, footprint):
    _check_brute_force(torch.tensor([TINY], dtype=dtype), 4, 5, footprint)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("footprint", FOOTPRINTS)
def test_random_clouds_match_brute_force(backend, gen, dtype, footprint):
    _check_brute_force(_random_pixels(gen, 2, 60, 7, 9, dtype), 7, 9, footprint)


def test_hand_computed_pixel(backend):
    # Depths 3, 1 and 2 on pixel (1, 2): w = (1/3, 1, 1/2), so d = 3 / (11/6) = 18/11 (Eq. 8).
    pixels = torch.tensor([[[2.5, 1.5, 3.0], [2.1, 1.9, 1.0], [2.9, 1.0, 2.0], [0.5, 0.5, 4.0]]])
    value, index = ops.splat_weighted_depth(pixels, 3, 4, 1)
    assert value[0, 1, 2].item() == pytest.approx(18 / 11, rel=1e-7)
    assert index[0, 1, 2] == 1  # the nearest point
    assert value[0, 0, 0] == 4.0 and index[0, 0, 0] == 3  # one point: its own depth
    assert torch.isinf(value).sum() == 10 and (index == -1).sum() == 10


@pytest.mark.parametrize("footprint", FOOTPRINTS)
def test_index_equals_rasterize_points(backend, gen, footprint):
    pixels = _random_pixels(gen, 2, 400, 16, 12, torch.float32)
    value, index = ops.splat_weighted_depth(pixels, 16, 12, footprint)
    zbuf, want = ops.rasterize_points(pixels, 16, 12, footprint)
    assert torch.equal(index, want)
    covered = index >= 0
    # A weighted mean of depths is never nearer than their minimum.
    assert bool((value[covered] >= zbuf[covered] * (1 - 1e-6)).all())
    assert torch.equal(torch.isinf(value), ~covered)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("footprint", FOOTPRINTS)
def test_native_equals_reference_on_larger_clouds(ext, gen, dtype, footprint):
    pixels = _random_pixels(gen, 3, 3000, 32, 40, dtype)
    got = ext.splat_weighted_depth(pixels, 32, 40, footprint)
    want = reference.splat_weighted_depth(pixels, 32, 40, footprint)
    assert torch.equal(got[1], want[1])
    torch.testing.assert_close(got[0], want[0], rtol=1e-6, atol=0)


@pytest.mark.parametrize("clouds", [1, 3])
@pytest.mark.parametrize("threads", [1, 3, 8])
def test_cpu_kernel_is_independent_of_thread_count(ext, gen, clouds, threads):
    # Fewer clouds than threads: images split into bands of rows (13 rows: a shorter last band).
    pixels = _random_pixels(gen, clouds, 500, 13, 11, torch.float32)
    want = reference.splat_weighted_depth(pixels, 13, 11, 3)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = ext.splat_weighted_depth(pixels, 13, 11, 3)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(got[1], want[1])
    torch.testing.assert_close(got[0], want[0], rtol=1e-6, atol=0)


def test_half_precision_is_computed_in_float32(backend, gen):
    pixels = _random_pixels(gen, 2, 50, 8, 8, torch.float16)
    got = ops.splat_weighted_depth(pixels, 8, 8, 3)
    want = ops.splat_weighted_depth(pixels.float(), 8, 8, 3)
    assert all(torch.equal(g, w) for g, w in zip(got, want))
