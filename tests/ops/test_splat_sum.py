"""splat_sum_depth: summed depths (any sign) by brute force and by hand, backends against each other."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pointnet2_ops import PointOpsInputError, ops, reference

from .test_rasterize import TINY, _random_pixels
from .test_validation import _splat_cases

SPLAT_CASES = _splat_cases("splat-sum", ops.splat_sum_depth)

DTYPES = [torch.float32, torch.float64]
FOOTPRINTS = [1, 2, 3, 4, 5]


def bf_sum(pixels: np.ndarray, height: int, width: int, footprint: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force on one cloud: float64 sums of float32-rounded finite depths, in point index order."""
    total = np.zeros((height, width))
    count = np.zeros((height, width), dtype=np.int64)
    for col, row, depth in pixels:
        with np.errstate(over="ignore"):
            z = float(np.float32(depth))
        if not (np.isfinite(z) and np.isfinite(col) and np.isfinite(row)):
            continue
        px, py = math.floor(col), math.floor(row)
        for r in range(py - (footprint - 1) // 2, py + footprint // 2 + 1):
            for c in range(px - (footprint - 1) // 2, px + footprint // 2 + 1):
                if 0 <= r < height and 0 <= c < width:
                    total[r, c] += z
                    count[r, c] += 1
    return total.astype(np.float32), count


def _check_brute_force(pixels: torch.Tensor, height: int, width: int, footprint: int) -> None:
    value, count = ops.splat_sum_depth(pixels, height, width, footprint)
    assert value.shape == count.shape == (pixels.shape[0], height, width)
    assert value.dtype == torch.float32 and count.dtype == torch.int64
    for b in range(pixels.shape[0]):
        want_value, want_count = bf_sum(pixels[b].double().numpy(), height, width, footprint)
        np.testing.assert_array_equal(count[b].numpy(), want_count)
        np.testing.assert_array_equal(value[b].numpy(), want_value)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("footprint", FOOTPRINTS)
def test_tiny_cloud_matches_brute_force(backend, dtype, footprint):
    _check_brute_force(torch.tensor([TINY], dtype=dtype), 4, 5, footprint)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("footprint", FOOTPRINTS)
def test_random_clouds_match_brute_force(backend, gen, dtype, footprint):
    _check_brute_force(_random_pixels(gen, 2, 60, 7, 9, dtype), 7, 9, footprint)


def test_hand_computed_pixels(backend):
    # Depths 3, -1 and 0.5 on pixel (row 1, col 2) sum to 2.5; zero and negative depths draw.
    pixels = torch.tensor([[[2.5, 1.5, 3.0], [2.1, 1.9, -1.0], [2.9, 1.0, 0.5], [0.5, 0.5, 0.0],
                            [3.5, 2.5, float("nan")], [3.5, 0.5, float("inf")]]])
    value, count = ops.splat_sum_depth(pixels, 3, 4, 1)
    assert value[0, 1, 2] == 2.5 and count[0, 1, 2] == 3
    assert value[0, 0, 0] == 0.0 and count[0, 0, 0] == 1  # a depth of 0 is counted
    assert count.sum() == 4 and (value != 0).sum() == 1  # NaN/inf depths draw nothing


def test_sum_and_count_of_a_full_block(backend):
    # I2P-MAE's 5 x 5 block: every pixel of the block gets the depth once, clipped at the border.
    pixels = torch.tensor([[[4.0, 5.0, -0.25], [0.0, 0.0, 1.0]]])
    value, count = ops.splat_sum_depth(pixels, 9, 8, 5)
    assert bool((value[0, 3:8, 2:7] == -0.25).all()) and int(count[0, 3:8, 2:7].sum()) == 25
    assert bool((value[0, :3, :3] == 1.0).all()) and int(count[0, :3, :3].sum()) == 9  # clipped
    assert int(count.sum()) == 34


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("footprint", FOOTPRINTS)
def test_native_equals_reference_on_larger_clouds(ext, gen, dtype, footprint):
    pixels = _random_pixels(gen, 3, 3000, 32, 40, dtype)
    pixels[..., 2] += torch.rand(3, 3000, generator=gen, dtype=torch.float64).to(dtype)  # not exact
    got = ext.splat_sum_depth(pixels, 32, 40, footprint)
    want = reference.splat_sum_depth(pixels, 32, 40, footprint)
    assert torch.equal(got[1], want[1])
    torch.testing.assert_close(got[0], want[0], rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("clouds", [1, 3])
@pytest.mark.parametrize("threads", [1, 3, 8])
def test_cpu_kernel_is_independent_of_thread_count(ext, gen, clouds, threads):
    pixels = _random_pixels(gen, clouds, 500, 13, 11, torch.float32)  # 13 rows: a shorter last band
    want = reference.splat_sum_depth(pixels, 13, 11, 3)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = ext.splat_sum_depth(pixels, 13, 11, 3)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(got[1], want[1])
    assert torch.equal(got[0], want[0])  # half-integer depths: every sum is exact


def test_half_precision_is_computed_in_float32(backend, gen):
    pixels = _random_pixels(gen, 2, 50, 8, 8, torch.float16)
    got = ops.splat_sum_depth(pixels, 8, 8, 5)
    want = ops.splat_sum_depth(pixels.float(), 8, 8, 5)
    assert all(torch.equal(g, w) for g, w in zip(got, want))


@pytest.mark.parametrize("call,fragments", [c[1:] for c in SPLAT_CASES], ids=[c[0] for c in SPLAT_CASES])
def test_invalid_argument_raises_with_clear_message(backend, call, fragments):
    # The argument checks every splatting op shares (tests/ops/test_validation.py).
    with pytest.raises(PointOpsInputError) as info:
        call()
    assert all(fragment in str(info.value) for fragment in fragments)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("footprint", [1, 2, 3, 5, 7])
def test_cuda_matches_cpu(ext, gen, dtype, footprint):
    col = torch.rand(4, 20000, generator=gen, dtype=torch.float64) * 52 - 2
    row = torch.rand(4, 20000, generator=gen, dtype=torch.float64) * 68 - 2
    depth = torch.randint(-8, 9, (4, 20000), generator=gen).double() / 4  # signed, exact sums
    pixels = torch.stack([col, row, depth], dim=-1).to(dtype)
    pixels[1, :, :2] = 10.5  # every point on one pixel: maximal atomicAdd contention
    pixels[2, ::7, 2] = float("nan")  # NaN depths draw nothing
    cpu = ops.splat_sum_depth(pixels, 64, 48, footprint)
    gpu = tuple(t.cpu() for t in ops.splat_sum_depth(pixels.cuda(), 64, 48, footprint))
    assert torch.equal(cpu[1], gpu[1])
    assert torch.equal(cpu[0], gpu[0])  # quarter depths: every float64 sum is exact in any order
    torch.testing.assert_close(gpu[0], reference.splat_sum_depth(pixels, 64, 48, footprint)[0])
