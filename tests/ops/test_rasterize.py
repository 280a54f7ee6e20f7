"""rasterize_points: backends vs a brute-force loop, native vs reference, CUDA vs CPU, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pointnet2_ops import ops, reference

DTYPES = [torch.float32, torch.float64]
FOOTPRINTS = [1, 2, 3, 4]


def bf_rasterize(pixels: np.ndarray, height: int, width: int, footprint: int):
    """Brute force on one cloud: visit points in index order, keep strictly nearer ones."""
    zbuf = np.full((height, width), np.inf, np.float32)
    index = np.full((height, width), -1, np.int64)
    for i, (col, row, depth) in enumerate(pixels):
        d = np.float32(depth)
        if not (0 < d < np.inf and np.isfinite(col) and np.isfinite(row)):
            continue
        px, py = math.floor(col), math.floor(row)
        for r in range(py - (footprint - 1) // 2, py + footprint // 2 + 1):
            for c in range(px - (footprint - 1) // 2, px + footprint // 2 + 1):
                if 0 <= r < height and 0 <= c < width and d < zbuf[r, c]:
                    zbuf[r, c], index[r, c] = d, i
    return zbuf, index


def _check_brute_force(pixels: torch.Tensor, height: int, width: int, footprint: int) -> None:
    zbuf, index = ops.rasterize_points(pixels, height, width, footprint)
    assert zbuf.shape == index.shape == (pixels.shape[0], height, width)
    assert zbuf.dtype == torch.float32 and index.dtype == torch.int64
    for b in range(pixels.shape[0]):
        want_z, want_i = bf_rasterize(pixels[b].numpy(), height, width, footprint)
        np.testing.assert_array_equal(index[b].numpy(), want_i)
        np.testing.assert_array_equal(zbuf[b].numpy(), want_z)


def _random_pixels(gen: torch.Generator, b: int, n: int, height: int, width: int,
                   dtype: torch.dtype) -> torch.Tensor:
    """Points around and beyond the image; coarse depths make ties; some are behind (<= 0)."""
    col = torch.rand(b, n, generator=gen, dtype=torch.float64) * (width + 4) - 2
    row = torch.rand(b, n, generator=gen, dtype=torch.float64) * (height + 4) - 2
    depth = torch.randint(-1, 5, (b, n), generator=gen).double() / 2
    return torch.stack([col, row, depth], dim=-1).to(dtype)


# Hand-made cloud on a 4 x 5 image: [col, row, depth].
TINY = [
    [1.5, 1.5, 2.0],  # 0
    [1.2, 1.9, 1.0],  # 1: same pixel as 0, nearer
    [1.7, 1.1, 1.0],  # 2: same pixel and depth as 1 -> 1 wins the tie
    [0.0, 0.0, 3.0],  # 3: top-left corner
    [4.99, 3.99, 3.0],  # 4: bottom-right corner
    [-0.5, 2.0, 1.0],  # 5: left of the image; only footprints >= 3 reach column 0
    [5.0, 1.0, 1.0],  # 6: just right of the image (column 5 does not exist)
    [2.5, 2.5, 0.0],  # 7: depth 0 -> ignored
    [3.5, 0.5, -1.0],  # 8: behind the camera -> ignored
    [3.5, 2.5, float("nan")],  # 9: NaN depth -> ignored
    [float("nan"), 2.5, 1.0],  # 10: NaN column -> ignored
    [float("inf"), 2.5, 1.0],  # 11: infinite column -> ignored
    [2.5, 3.5, float("inf")],  # 12: infinite depth -> ignored
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("footprint", FOOTPRINTS)
def test_tiny_cloud_matches_brute_force(backend, dtype, footprint):
    _check_brute_force(torch.tensor([TINY], dtype=dtype), 4, 5, footprint)


def test_tiny_cloud_footprint_one(backend):
    zbuf, index = ops.rasterize_points(torch.tensor([TINY]), 4, 5, 1)
    assert index[0].tolist() == [
        [3, -1, -1, -1, -1],
        [-1, 1, -1, -1, -1],
        [-1, -1, -1, -1, -1],
        [-1, -1, -1, -1, 4],
    ]
    assert zbuf[0, 1, 1] == 1.0 and zbuf[0, 0, 0] == 3.0 and torch.isinf(zbuf[0, 2]).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("footprint", FOOTPRINTS)
def test_random_clouds_match_brute_force(backend, gen, dtype, footprint):
    _check_brute_force(_random_pixels(gen, 2, 60, 7, 9, dtype), 7, 9, footprint)


@pytest.mark.parametrize("footprint", FOOTPRINTS)
def test_footprint_covers_exactly_its_square(backend, footprint):
    zbuf, index = ops.rasterize_points(torch.tensor([[[5.3, 4.8, 1.5]]]), 10, 12, footprint)
    rows, cols = torch.nonzero(index[0] == 0, as_tuple=True)
    assert len(rows) == footprint**2 and (zbuf[0] == 1.5).sum() == footprint**2
    lo, hi = -((footprint - 1) // 2), footprint // 2
    assert (rows.min().item(), rows.max().item()) == (4 + lo, 4 + hi)
    assert (cols.min().item(), cols.max().item()) == (5 + lo, 5 + hi)


def test_depths_compare_as_float32(backend):
    # Distinct float64 depths that round to one float32: a tie, won by the lower index.
    pixels = torch.tensor([[[1.5, 1.5, 1.0 + 1e-12], [1.5, 1.5, 1.0]]], dtype=torch.float64)
    zbuf, index = ops.rasterize_points(pixels, 3, 3, 1)
    assert index[0, 1, 1] == 0 and zbuf[0, 1, 1] == 1.0


def test_half_precision_is_computed_in_float32(backend, gen):
    pixels = _random_pixels(gen, 2, 50, 8, 8, torch.float16)
    got = ops.rasterize_points(pixels, 8, 8, 3)
    want = ops.rasterize_points(pixels.float(), 8, 8, 3)
    assert all(torch.equal(g, w) for g, w in zip(got, want))


@pytest.mark.parametrize("clouds", [1, 3])
@pytest.mark.parametrize("threads", [1, 3, 8])
def test_cpu_kernel_is_independent_of_thread_count(ext, gen, clouds, threads):
    # Fewer clouds than threads: images split into bands of rows (13 rows: a shorter last band).
    pixels = _random_pixels(gen, clouds, 500, 13, 11, torch.float32)
    want = reference.rasterize_points(pixels, 13, 11, 3)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = ext.rasterize_points(pixels, 13, 11, 3)
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(g, w) for g, w in zip(got, want))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("footprint", FOOTPRINTS)
def test_native_equals_reference_on_larger_clouds(ext, gen, dtype, footprint):
    pixels = _random_pixels(gen, 3, 3000, 32, 40, dtype)
    got = ext.rasterize_points(pixels, 32, 40, footprint)
    want = reference.rasterize_points(pixels, 32, 40, footprint)
    assert all(torch.equal(g, w) for g, w in zip(got, want))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("footprint", FOOTPRINTS + [7])
def test_cuda_matches_cpu(ext, gen, dtype, footprint):
    pixels = _random_pixels(gen, 4, 20000, 64, 48, dtype)  # many points per pixel: contention
    pixels[1, :, :2] = 10.5  # every point on one pixel ...
    pixels[1, 1:, 2] = 1.0  # ... at one depth: the lowest visible index must win the tie
    cpu = ops.rasterize_points(pixels, 64, 48, footprint)
    gpu = ops.rasterize_points(pixels.cuda(), 64, 48, footprint)
    assert all(g.is_cuda for g in gpu)
    assert all(torch.equal(c, g.cpu()) for c, g in zip(cpu, gpu))
    assert torch.equal(reference.rasterize_points(pixels.cuda(), 64, 48, footprint)[1].cpu(),
                       cpu[1])
