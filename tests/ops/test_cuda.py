"""CUDA kernels vs CPU kernels on every op, forward and backward (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from pointnet2_ops import ops, pointnet2_utils

pytestmark = pytest.mark.cuda

DTYPES = [torch.float32, torch.float64]


def _as_tuple(result: torch.Tensor | tuple) -> tuple:
    return result if isinstance(result, tuple) else (result,)


def _both(fn, *args):
    """Run `fn` on CPU and on CUDA copies of the tensor arguments; return (cpu, cuda)."""
    on_gpu = [a.cuda() if torch.is_tensor(a) else a for a in args]
    cpu, gpu = _as_tuple(fn(*args)), _as_tuple(fn(*on_gpu))
    return cpu, tuple(t.cpu() for t in gpu)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [5, 100, 1024, 3000])  # < warp, odd, block-sized, > 1024 threads
def test_fps_matches_cpu(ext, gen, dtype, n):
    xyz = torch.rand(3, n, 3, generator=gen, dtype=dtype)
    xyz[1] = xyz[1, torch.arange(n) % max(1, n // 3)]  # duplicated points: ties everywhere
    cpu, gpu = _both(ops.furthest_point_sample, xyz, min(n, 257))
    assert torch.equal(cpu[0], gpu[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_neighbour_ops_match_cpu(ext, gen, dtype):
    xyz = torch.rand(2, 1500, 3, generator=gen, dtype=dtype)
    xyz[:, 1000:] = xyz[:, :500]  # duplicates
    centres = xyz[:, ::7].contiguous()
    for fn, args in [
        (ops.ball_query, (0.1, 32, xyz, centres)),
        (ops.ball_query, (1e-5, 4, xyz, centres + 10)),  # no hits
        (ops.three_nn, (centres, xyz)),
        (ops.three_nn, (centres, xyz[:, :2].contiguous())),  # m < 3
        (ops.knn, (centres, xyz, 20)),
    ]:
        cpu, gpu = _both(fn, *args)
        for c, g in zip(cpu, gpu):
            assert torch.equal(c, g), fn.__name__


# (N, k): k up to the register kernel's 32 and past it (global kernel), k == N on both paths,
# N below a warp, N not a multiple of the 128-point tile, N spanning several tiles.
KNN_SIZES = [(5, 1), (5, 5), (32, 32), (40, 33), (40, 40), (300, 1), (300, 20), (300, 32), (300, 33), (1100, 20)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k", KNN_SIZES)
@pytest.mark.parametrize("layout", ["random", "duplicates", "grid"])
def test_knn_matches_cpu_bit_for_bit(ext, gen, dtype, n, k, layout):
    support = torch.rand(3, n, 3, generator=gen, dtype=dtype)
    if layout == "duplicates":  # each point twice: every distance tied with a higher index
        support[:, n // 2:] = support[:, : n - n // 2]
    elif layout == "grid":  # 27 grid positions: long runs of equal distances
        support = (support * 3).floor()
    query = torch.cat([support[:, :70], torch.rand(3, 130, 3, generator=gen, dtype=dtype)], 1)  # M=200: 2 blocks
    cpu, gpu = _both(ops.knn, query, support, k)
    assert torch.equal(cpu[1], gpu[1]) and torch.equal(cpu[0], gpu[0])


def test_knn_nan_and_inf_follow_the_cpu_kernel(ext, gen):
    support = torch.rand(2, 200, 3, generator=gen)
    support[0, ::7, 1] = float("nan")
    support[1, ::9] = 1e30  # squared distance overflows to +inf
    query = torch.rand(2, 50, 3, generator=gen)
    query[1, ::5, 0] = float("nan")
    for k in (20, 40):  # register and global kernels
        cpu, gpu = _both(ops.knn, query, support, k)
        assert torch.equal(cpu[1], gpu[1])
        torch.testing.assert_close(gpu[0], cpu[0], rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("channels", [1, 16, 37])  # one, exactly one, and a partial 16-channel chunk
@pytest.mark.parametrize("dtype", DTYPES)
def test_group_and_gather_channel_chunks_match_cpu(ext, gen, channels, dtype):
    features = torch.randn(3, channels, 500, generator=gen, dtype=dtype)
    idx3 = torch.randint(0, 500, (3, 160, 13), generator=gen, dtype=torch.int32)  # M*K = 2080: 2 tiles of 1024 + 32
    idx3[0, 0] = 499
    idx3[0, 1] = 0
    for fn, args in [(ops.group_points, (features, idx3)), (ops.gather_points, (features, idx3[:, :, 0].contiguous()))]:
        cpu, gpu = _both(fn, *args)
        assert torch.equal(cpu[0], gpu[0]), fn.__name__


@pytest.mark.parametrize("dtype", DTYPES + [torch.float16])
def test_feature_ops_match_cpu(ext, gen, dtype):
    features = torch.randn(2, 16, 300, generator=gen).to(dtype)
    idx2 = torch.randint(0, 300, (2, 64), generator=gen, dtype=torch.int32)
    idx3 = torch.randint(0, 300, (2, 64, 16), generator=gen, dtype=torch.int32)
    nn_idx = torch.randint(0, 300, (2, 500, 3), generator=gen, dtype=torch.int32)
    weight = torch.rand(2, 500, 3, generator=gen).to(dtype)
    tol = {"rtol": 1e-2, "atol": 1e-2} if dtype == torch.float16 else {}
    for fn, args in [
        (ops.gather_points, (features, idx2)),
        (ops.gather_points_backward, (torch.randn(2, 16, 64, generator=gen).to(dtype), idx2, 300)),
        (ops.group_points, (features, idx3)),
        (ops.group_points_backward,
         (torch.randn(2, 16, 64, 16, generator=gen).to(dtype), idx3, 300)),
        (ops.three_interpolate, (features, nn_idx, weight)),
        (ops.three_interpolate_backward,
         (torch.randn(2, 16, 500, generator=gen).to(dtype), nn_idx, weight, 300)),
    ]:
        cpu, gpu = _both(fn, *args)
        assert gpu[0].dtype == dtype, fn.__name__
        torch.testing.assert_close(gpu[0], cpu[0], **tol)


def test_autograd_on_cuda(ext, gen):
    features = torch.randn(2, 3, 10, generator=gen, dtype=torch.float64).cuda().requires_grad_()
    idx = torch.randint(0, 10, (2, 4, 5), generator=gen, dtype=torch.int32).cuda()
    nn_idx = torch.randint(0, 10, (2, 6, 3), generator=gen, dtype=torch.int32).cuda()
    weight = torch.rand(2, 6, 3, generator=gen, dtype=torch.float64).cuda()
    assert torch.autograd.gradcheck(pointnet2_utils.grouping_operation, (features, idx))
    gather_idx = idx[:, :, 0].contiguous()
    assert torch.autograd.gradcheck(pointnet2_utils.gather_operation, (features, gather_idx))
    assert torch.autograd.gradcheck(pointnet2_utils.three_interpolate, (features, nn_idx, weight))


def test_runs_on_current_device_and_stream(ext, gen):
    xyz = torch.rand(2, 200, 3, generator=gen).cuda()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())  # xyz was written on the default stream
    with torch.cuda.stream(stream):
        idx = ops.furthest_point_sample(xyz, 50)
    stream.synchronize()
    assert idx.device == xyz.device
    assert torch.equal(idx.cpu(), ops.furthest_point_sample(xyz.cpu(), 50))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("footprint", [1, 2, 3, 4, 7])
def test_splat_weighted_depth_matches_cpu(ext, gen, dtype, footprint):
    col = torch.rand(4, 20000, generator=gen, dtype=torch.float64) * 52 - 2
    row = torch.rand(4, 20000, generator=gen, dtype=torch.float64) * 68 - 2
    depth = torch.randint(-1, 9, (4, 20000), generator=gen).double() / 4  # ties, some behind
    pixels = torch.stack([col, row, depth], dim=-1).to(dtype)
    pixels[1, :, :2] = 10.5  # every point on one pixel: maximal atomicAdd contention
    cpu, gpu = _both(ops.splat_weighted_depth, pixels, 64, 48, footprint)
    assert torch.equal(cpu[1], gpu[1])  # nearest point, ties to the lowest index
    torch.testing.assert_close(gpu[0], cpu[0], rtol=1e-6, atol=0)  # float64 sums, any order
