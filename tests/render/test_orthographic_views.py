"""I2P-MAE's orthographic views: permutations, brute-force splat, pixel-exact mapping, background, aspect."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from plugin.errors import BadInputError
from plugin.render import fit_orthographic_grid, point_pixels, read_maps, render_orthographic_views
from plugin.render.orthographic_views import VIEW_AXES, permute_views

from .random_geometry import unit_ball_clouds

SIZE = 224

# Five points whose coordinates are 0.25 apart on every axis: their 5 x 5 blocks never touch.
SPARSE = torch.tensor([
    [0.00, 0.50, 0.75],
    [0.25, 1.00, 0.00],
    [0.50, 0.00, 0.25],
    [0.75, 0.75, 1.00],
    [1.00, 0.25, 0.50],
]) - 0.4  # some depths negative


def bf_views(cloud: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Brute force of upstream ``proj2img`` on one float32 cloud (N, 3), clipping the block at the border.

    Returns (V, size, size) sigmoid(summed depth), written from the formulas, loops over points and offsets.
    """
    out = np.zeros((3, size, size))
    for v, (ra, rb, rd) in enumerate(VIEW_AXES):
        ab = cloud[:, [ra, rb]]
        lo = ab.min(axis=0)
        cell = np.float32((ab.max(axis=0) - lo).max() / np.float32(size - 3))
        idx = np.floor((ab - lo) / cell)  # float32 arithmetic, like the points' dtype
        dense_max, dense_min = idx.max(axis=0) + 2 + 1, idx.min(axis=0) - 2 + 1  # upstream's +1
        centre = np.floor((dense_max + dense_min) / 2)
        offset = size / 2 - centre - 1
        for p in range(cloud.shape[0]):
            r0, c0 = idx[p] + 1 + offset
            for dr in range(-2, 3):
                for dc in range(-2, 3):
                    r, c = int(r0 + dr), int(c0 + dc)
                    if 0 <= r < size and 0 <= c < size:
                        out[v, r, c] += float(np.float32(cloud[p, rd]))
    return 1 / (1 + np.exp(-out))


def test_the_three_axis_permutations():
    point = torch.tensor([[[1.0, 2.0, 3.0]]])
    views = permute_views(point)[0, :, 0]
    # (x, y | z), (z, x | y), (y, z | x): rows, columns, depth
    assert views.tolist() == [[1.0, 2.0, 3.0], [3.0, 1.0, 2.0], [2.0, 3.0, 1.0]]


def test_each_view_is_view_zero_of_the_permuted_cloud(gen):
    cloud = unit_ball_clouds(gen, 2, 300, torch.float32)
    images, _ = render_orthographic_views(cloud)
    for v, axes in enumerate(VIEW_AXES):
        alone, _ = render_orthographic_views(cloud[..., list(axes)])
        assert torch.equal(images[:, v], alone[:, 0])


def test_view_rows_follow_the_first_axis():
    # A segment along x: view 0 draws it down the rows (one column), view 1 across the columns.
    cloud = torch.stack([torch.linspace(-1, 1, 50), torch.full((50,), 0.3), torch.full((50,), 0.5)], -1)[None]
    images, _ = render_orthographic_views(cloud)
    lit = images[0, :, 0] != 0.5
    assert lit[0].any(dim=1).sum() > 200 and lit[0].any(dim=0).sum() == 5
    assert lit[1].any(dim=0).sum() > 200 and lit[1].any(dim=1).sum() == 5


@pytest.mark.parametrize("n", [1, 7, 400])
def test_five_by_five_sum_splat_matches_brute_force(gen, n):
    cloud = unit_ball_clouds(gen, 2, n, torch.float32)
    if n == 1:
        cloud = torch.cat([cloud, cloud + 0.5], dim=1)  # two points: an extent to fit
    images, _ = render_orthographic_views(cloud)
    assert images.shape == (2, 3, 3, SIZE, SIZE) and images.dtype == torch.float32
    assert torch.equal(images[:, :, 0], images[:, :, 1]) and torch.equal(images[:, :, 0], images[:, :, 2])
    for b in range(2):
        want = torch.from_numpy(bf_views(cloud[b].numpy())).float()
        torch.testing.assert_close(images[b, :, 0], want, rtol=0, atol=1e-6)


def test_point_pixel_is_its_splat_centre():
    images, grid = render_orthographic_views(SPARSE[None])
    pixels = point_pixels(SPARSE[None], grid)[0]  # (V, N, 2)
    for v in range(3):
        lit = images[0, v, 0] != 0.5
        covered = torch.zeros_like(lit)
        for (r, c), depth in zip(pixels[v].tolist(), permute_views(SPARSE[None])[0, v, :, 2]):
            block = (slice(max(r - 2, 0), r + 3), slice(max(c - 2, 0), c + 3))  # clipped at the border
            assert bool(lit[block].all())  # the block centred on the point's pixel
            assert bool((images[0, v, 0][block] == torch.sigmoid(depth)).all())  # its depth, nothing else
            covered[block] = True
        assert torch.equal(covered, lit)  # and every lit pixel belongs to such a block
        assert int(lit.sum()) >= 25 * SPARSE.shape[0] - 4 * 5  # at most four blocks lose a border line


def test_read_maps_at_point_pixels_reads_the_points_own_splat(gen):
    cloud = unit_ball_clouds(gen, 2, 500, torch.float32)
    images, grid = render_orthographic_views(cloud)
    values = read_maps(images, point_pixels(cloud, grid))  # same-size bicubic: the identity
    assert values.shape == (2, 3, 500, 3)
    pixels = point_pixels(cloud, grid)
    for b in range(2):
        for v in range(3):
            r, c = pixels[b, v, :, 0], pixels[b, v, :, 1]
            assert torch.equal(values[b, v, :, 0], images[b, v, 0, r, c])
    assert bool((pixels >= 0).all() and (pixels < SIZE).all())


def test_read_maps_is_bicubic_upsampling_then_lookup(gen):
    maps = torch.randn(2, 3, 5, 14, 14, generator=gen, requires_grad=True)
    cloud = unit_ball_clouds(gen, 2, 64, torch.float32)
    _, grid = render_orthographic_views(cloud)
    pixels = point_pixels(cloud, grid)
    got = read_maps(maps, pixels)
    up = F.interpolate(maps.detach().flatten(0, 1), size=(SIZE, SIZE), mode="bicubic").view(2, 3, 5, SIZE, SIZE)
    for b in range(2):
        for v in range(3):
            for m in range(64):
                r, c = pixels[b, v, m].tolist()
                torch.testing.assert_close(got[b, v, m].detach(), up[b, v, :, r, c], rtol=1e-5, atol=1e-5)
    weights = torch.randn(got.shape, generator=gen)
    (got * weights).sum().backward()
    up_maps = maps.detach().clone().requires_grad_(True)
    up = F.interpolate(up_maps.flatten(0, 1), size=(SIZE, SIZE), mode="bicubic").view(2, 3, 5, SIZE, SIZE)
    b, v, m = torch.meshgrid(torch.arange(2), torch.arange(3), torch.arange(64), indexing="ij")
    (up[b, v, :, pixels[..., 0], pixels[..., 1]] * weights).sum().backward()
    torch.testing.assert_close(maps.grad, up_maps.grad, rtol=1e-5, atol=1e-5)


def test_token_centres_map_through_the_same_grid(gen):
    cloud = unit_ball_clouds(gen, 1, 256, torch.float32)
    _, grid = render_orthographic_views(cloud)
    centres = cloud[:, :16]  # centres that are cloud points land exactly on their pixels
    assert torch.equal(point_pixels(centres, grid), point_pixels(cloud, grid)[:, :, :16])
    far = torch.tensor([[[5.0, -5.0, 0.0]]])  # outside the cloud: read at the clamped border
    maps = torch.randn(1, 3, 2, 4, 4)
    up = F.interpolate(maps[0], size=(SIZE, SIZE), mode="bicubic")
    pixels = point_pixels(far, grid).clamp(0, SIZE - 1)[0, :, 0]
    want = torch.stack([up[v, :, r, c] for v, (r, c) in enumerate(pixels.tolist())])
    torch.testing.assert_close(read_maps(maps, point_pixels(far, grid))[0, :, 0], want, rtol=1e-5, atol=1e-5)


def test_background_is_one_half(gen):
    cloud = unit_ball_clouds(gen, 2, 200, torch.float32)
    images, grid = render_orthographic_views(cloud)
    pixels = point_pixels(cloud, grid)
    covered = torch.zeros(2, 3, SIZE, SIZE, dtype=torch.bool)
    for b in range(2):
        for v in range(3):
            for r, c in pixels[b, v].tolist():
                covered[b, v, max(r - 2, 0):r + 3, max(c - 2, 0):c + 3] = True
    assert bool((images[:, :, 0][~covered] == 0.5).all())
    assert bool((images[:, :, :, :2, :2] == 0.5).all())  # the corners of a ball's views are empty


def test_aspect_ratio_is_kept_and_object_centred(gen):
    cloud = torch.rand(1, 20000, 3, generator=gen) * torch.tensor([2.0, 1.0, 0.5]) + 1  # a 2:1:0.5 box
    images, _ = render_orthographic_views(cloud)
    lit = images[0, 0, 0] != 0.5  # rows x (2), columns y (1)
    rows = lit.any(dim=1).nonzero().squeeze(1)
    cols = lit.any(dim=0).nonzero().squeeze(1)
    height, width = rows[-1] - rows[0] + 1 - 4, cols[-1] - cols[0] + 1 - 4  # minus the block's margin
    assert height / width == pytest.approx(2.0, rel=0.02)
    for line in (rows, cols):
        assert abs((line[0] + line[-1]).item() / 2 - (SIZE - 1) / 2) <= 1.0  # centred


def test_grid_is_per_sample_and_scale_free(gen):
    cloud = unit_ball_clouds(gen, 1, 300, torch.float32)
    pair = torch.cat([cloud, 2 * cloud], dim=0)  # the same shape at twice the scale
    grid = fit_orthographic_grid(pair)
    pixels = point_pixels(pair, grid)
    assert torch.equal(pixels[0], pixels[1])
    assert torch.equal(grid.cell[1], 2 * grid.cell[0])
    assert math.isclose(grid.cell[0, 0].item(), 2 * cloud[0, :, :2].abs().max().item() / 221, rel_tol=0.05)


def test_degenerate_and_bad_clouds():
    images, grid = render_orthographic_views(torch.zeros(1, 4, 3))  # one location: one block
    assert int((images[0, 0, 0] != 0.5).sum()) == 0  # depth 0 sums to 0: sigmoid 0.5 ...
    assert point_pixels(torch.zeros(1, 1, 3), grid)[0, :, 0].tolist() == [[111, 111]] * 3  # ... centred
    with pytest.raises(BadInputError):
        render_orthographic_views(torch.zeros(1, 4, 2))
    with pytest.raises(BadInputError):
        render_orthographic_views(torch.full((1, 4, 3), float("nan")))
    with pytest.raises(BadInputError):
        read_maps(torch.zeros(1, 3, 1, 4, 4), torch.zeros(1, 2, 5, 2, dtype=torch.long))
