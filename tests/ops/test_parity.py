"""Parity of every op: backend (native / reference) vs brute-force loops, and native vs reference.

The brute-force versions loop over points with NumPy scalars of the input dtype, so every
rounding step matches the kernels (squared distance as ``(dx*dx + dy*dy) + dz*dz``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pointnet2_ops import ops, reference


# --------------------------------------------------------------------------- brute force


def _sq(a: np.ndarray, b: np.ndarray) -> np.floating:
    dx, dy, dz = a[0] - b[0], a[1] - b[1], a[2] - b[2]
    return dx * dx + dy * dy + dz * dz


def bf_fps(xyz: np.ndarray, npoint: int) -> list[int]:
    n = len(xyz)
    min_d = [xyz.dtype.type(1e10)] * n
    out = [0]
    for _ in range(1, npoint):
        last = xyz[out[-1]]
        min_d = [min(d, _sq(xyz[k], last)) for k, d in enumerate(min_d)]
        out.append(max(range(n), key=lambda k: (min_d[k], -k)))  # ties: lowest index
    return out


def bf_ball_query(radius: float, nsample: int, xyz: np.ndarray, centres: np.ndarray) -> list:
    r = xyz.dtype.type(radius)
    rows = []
    for c in centres:
        hits = [k for k in range(len(xyz)) if _sq(c, xyz[k]) < r * r][:nsample]
        rows.append(hits + [hits[0]] * (nsample - len(hits)) if hits else [0] * nsample)
    return rows


def bf_three_nn(unknown: np.ndarray, known: np.ndarray) -> tuple[list, list]:
    dists, idxs = [], []
    for p in unknown:
        order = sorted(range(len(known)), key=lambda k: (_sq(p, known[k]), k))[:3]
        d = [_sq(p, known[k]) for k in order]
        dists.append(d + [np.inf] * (3 - len(d)))
        idxs.append(order + [0] * (3 - len(order)))
    return dists, idxs


def bf_knn(query: np.ndarray, support: np.ndarray, k: int) -> tuple[list, list]:
    dists, idxs = [], []
    for p in query:
        order = sorted(range(len(support)), key=lambda j: (_sq(p, support[j]), j))[:k]
        dists.append([_sq(p, support[j]) for j in order])
        idxs.append(order)
    return dists, idxs


def bf_group(features: np.ndarray, idx: np.ndarray) -> np.ndarray:
    b, c, _ = features.shape
    out = np.zeros((b, c, *idx.shape[1:]), features.dtype)
    for bi in range(b):
        for ci in range(c):
            for pos in np.ndindex(*idx.shape[1:]):
                out[(bi, ci, *pos)] = features[bi, ci, idx[(bi, *pos)]]
    return out


def bf_scatter(grad_out: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    b, c = grad_out.shape[:2]
    grad = np.zeros((b, c, n), grad_out.dtype)
    for bi in range(b):
        for ci in range(c):
            for pos in np.ndindex(*idx.shape[1:]):
                grad[bi, ci, idx[(bi, *pos)]] += grad_out[(bi, ci, *pos)]
    return grad


def bf_interpolate(features: np.ndarray, idx: np.ndarray, weight: np.ndarray) -> np.ndarray:
    b, c, _ = features.shape
    out = np.zeros((b, c, idx.shape[1]), features.dtype)
    for bi in range(b):
        for ci in range(c):
            for i in range(idx.shape[1]):
                f = features[bi, ci, idx[bi, i]]
                w = weight[bi, i]
                out[bi, ci, i] = w[0] * f[0] + w[1] * f[1] + w[2] * f[2]
    return out


def bf_interpolate_backward(grad_out: np.ndarray, idx: np.ndarray, weight: np.ndarray,
                            m: int) -> np.ndarray:
    b, c, n = grad_out.shape
    grad = np.zeros((b, c, m), grad_out.dtype)
    for bi in range(b):
        for ci in range(c):
            for i in range(n):
                for s in range(3):
                    grad[bi, ci, idx[bi, i, s]] += grad_out[bi, ci, i] * weight[bi, i, s]
    return grad


# --------------------------------------------------------------------------- data


def _cloud(gen: torch.Generator, b: int, n: int, dtype: torch.dtype = torch.float32,
           duplicates: bool = False) -> torch.Tensor:
    xyz = torch.rand(b, n, 3, generator=gen, dtype=torch.float64).to(dtype)
    if duplicates:  # every point appears twice (and ties abound)
        xyz = torch.cat([xyz[:, : n // 2], xyz[:, : n - n // 2]], dim=1).contiguous()
    return xyz


def _as_tuple(result: torch.Tensor | tuple) -> tuple:
    return result if isinstance(result, tuple) else (result,)


CLOUDS = [
    pytest.param(dict(n=40, duplicates=False), id="random"),
    pytest.param(dict(n=40, duplicates=True), id="duplicates"),
]
DTYPES = [torch.float32, torch.float64]


# --------------------------------------------------------------------------- vs brute force


@pytest.mark.parametrize("cloud", CLOUDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("npoint", [1, 17, 40])  # 40 == N
def test_fps_matches_brute_force(backend, gen, cloud, dtype, npoint):
    xyz = _cloud(gen, 2, dtype=dtype, **cloud)
    got = ops.furthest_point_sample(xyz, npoint)
    assert got.dtype == torch.int32 and got.shape == (2, npoint)
    for b in range(2):
        assert got[b].tolist() == bf_fps(xyz[b].numpy(), npoint)


def test_fps_all_duplicates_picks_lowest_indices(backend):
    xyz = torch.zeros(1, 10, 3)
    assert ops.furthest_point_sample(xyz, 4).tolist() == [[0, 0, 0, 0]]


@pytest.mark.parametrize("cloud", CLOUDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("radius,nsample", [(0.3, 8), (0.5, 64), (1e-4, 5)])  # 1e-4: no hits
def test_ball_query_matches_brute_force(backend, gen, cloud, dtype, radius, nsample):
    xyz = _cloud(gen, 2, dtype=dtype, **cloud)
    centres = torch.rand(2, 7, 3, generator=gen, dtype=dtype)
    got = ops.ball_query(radius, nsample, xyz, centres)
    assert got.dtype == torch.int32 and got.shape == (2, 7, nsample)
    for b in range(2):
        assert got[b].tolist() == bf_ball_query(radius, nsample, xyz[b].numpy(), centres[b].numpy())


def test_ball_query_no_hit_gives_zeros_and_centre_hits_itself(backend):
    xyz = torch.tensor([[[0.0, 0, 0], [1, 1, 1], [0.05, 0, 0]]])
    centres = torch.tensor([[[5.0, 5, 5], [1, 1, 1]]])
    got = ops.ball_query(0.1, 3, xyz, centres)
    assert got.tolist() == [[[0, 0, 0], [1, 1, 1]]]


@pytest.mark.parametrize("cloud", CLOUDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 2, 3, 25])
def test_three_nn_matches_brute_force(backend, gen, cloud, dtype, m):
    known = _cloud(gen, 2, dtype=dtype, **{**cloud, "n": m})
    unknown = torch.rand(2, 9, 3, generator=gen, dtype=dtype)
    dist2, idx = ops.three_nn(unknown, known)
    assert dist2.dtype == dtype and idx.dtype == torch.int32
    for b in range(2):
        want_d, want_i = bf_three_nn(unknown[b].numpy(), known[b].numpy())
        assert idx[b].tolist() == want_i
        assert dist2[b].tolist() == np.asarray(want_d, dtype=np.float64).tolist()


@pytest.mark.parametrize("cloud", CLOUDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 6, 40])  # 40 == N
def test_knn_matches_brute_force(backend, gen, cloud, dtype, k):
    support = _cloud(gen, 2, dtype=dtype, **cloud)
    query = support[:, :11].contiguous()
    dist2, idx = ops.knn(query, support, k)
    assert dist2.shape == idx.shape == (2, 11, k) and idx.dtype == torch.int32
    for b in range(2):
        want_d, want_i = bf_knn(query[b].numpy(), support[b].numpy(), k)
        assert idx[b].tolist() == want_i
        assert dist2[b].tolist() == np.asarray(want_d, dtype=np.float64).tolist()


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_and_backward_match_brute_force(backend, gen, dtype):
    features = torch.randn(2, 4, 15, generator=gen, dtype=dtype)
    idx = torch.randint(0, 15, (2, 9), generator=gen, dtype=torch.int32)  # with repeats
    out = ops.gather_points(features, idx)
    np.testing.assert_array_equal(out.numpy(), bf_group(features.numpy(), idx.numpy()))
    grad_out = torch.randn(2, 4, 9, generator=gen, dtype=dtype)
    grad = ops.gather_points_backward(grad_out, idx, 15)
    np.testing.assert_allclose(grad.numpy(), bf_scatter(grad_out.numpy(), idx.numpy(), 15),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_group_and_backward_match_brute_force(backend, gen, dtype):
    features = torch.randn(2, 3, 12, generator=gen, dtype=dtype)
    idx = torch.randint(0, 12, (2, 5, 4), generator=gen, dtype=torch.int32)
    out = ops.group_points(features, idx)
    assert out.shape == (2, 3, 5, 4)
    np.testing.assert_array_equal(out.numpy(), bf_group(features.numpy(), idx.numpy()))
    grad_out = torch.randn(2, 3, 5, 4, generator=gen, dtype=dtype)
    grad = ops.group_points_backward(grad_out, idx, 12)
    np.testing.assert_allclose(grad.numpy(), bf_scatter(grad_out.numpy(), idx.numpy(), 12),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_three_interpolate_and_backward_match_brute_force(backend, gen, dtype):
    features = torch.randn(2, 3, 10, generator=gen, dtype=dtype)
    idx = torch.randint(0, 10, (2, 8, 3), generator=gen, dtype=torch.int32)
    weight = torch.rand(2, 8, 3, generator=gen, dtype=dtype)
    out = ops.three_interpolate(features, idx, weight)
    want = bf_interpolate(features.numpy(), idx.numpy(), weight.numpy())
    np.testing.assert_array_equal(out.numpy(), want)
    grad_out = torch.randn(2, 3, 8, generator=gen, dtype=dtype)
    grad = ops.three_interpolate_backward(grad_out, idx, weight, 10)
    np.testing.assert_allclose(
        grad.numpy(), bf_interpolate_backward(grad_out.numpy(), idx.numpy(), weight.numpy(), 10),
        rtol=1e-6, atol=1e-6,
    )


# --------------------------------------------------------------------------- native vs reference


@pytest.mark.parametrize("duplicates", [False, True], ids=["random", "duplicates"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_native_equals_reference_on_larger_clouds(ext, gen, dtype, duplicates):
    xyz = _cloud(gen, 3, 700, dtype, duplicates)  # duplicates: FPS runs past 350 unique points
    centres = xyz[:, :130].contiguous()
    for name, args in [
        ("furthest_point_sample", (xyz, 400)),
        ("ball_query", (0.1, 32, xyz, centres)),
        ("three_nn", (xyz, centres)),
        ("knn", (centres, xyz, 16)),
    ]:
        got, want = getattr(ext, name)(*args), getattr(reference, name)(*args)
        for g, w in zip(_as_tuple(got), _as_tuple(want)):
            assert torch.equal(g, w), name

    features = torch.randn(3, 16, 700, generator=gen, dtype=dtype)
    idx = torch.randint(0, 700, (3, 130, 32), generator=gen, dtype=torch.int32)
    torch.testing.assert_close(ext.group_points(features, idx),
                               reference.group_points(features, idx))
    grad_out = torch.randn(3, 16, 130, 32, generator=gen, dtype=dtype)
    torch.testing.assert_close(ext.group_points_backward(grad_out, idx, 700),
                               reference.group_points_backward(grad_out, idx, 700))


def test_native_results_do_not_depend_on_thread_count(ext, gen):
    xyz = _cloud(gen, 4, 600)
    features = torch.randn(4, 8, 600, generator=gen)
    idx = torch.randint(0, 600, (4, 100, 16), generator=gen, dtype=torch.int32)
    grad_out = torch.randn(4, 8, 100, 16, generator=gen)

    def run() -> list[torch.Tensor]:
        return [
            ext.furthest_point_sample(xyz, 200),
            ext.ball_query(0.2, 16, xyz, xyz),
            *ext.knn(xyz, xyz, 8),
            ext.group_points_backward(grad_out, idx, 600),
        ]

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = run()
        torch.set_num_threads(max(2, threads))
        multi = run()
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(single, multi):
        assert torch.equal(a, b)


def test_native_kernels_are_built_with_openmp(ext):
    assert ext.with_openmp(), "CPU kernels built without OpenMP: at::parallel_for is serial"
