"""CLIP2Point depth renderer: brute-force parity, footprints, pixel mapping, images, cameras."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from plugin.errors import BadInputError
from plugin.render import (
    DISTANCE_JITTER,
    DepthRenderer,
    depth_to_image,
    project_to_pixels,
    render_depth,
    sample_distance_scales,
    scale_camera_distance,
)
from plugin.render.cameras import project
from plugin.render.depth_renderer import CLIP_MEAN, CLIP_STD
from plugin.render.view_sets import orthogonal_and_corner_views, orthogonal_views

from .random_geometry import unit_ball_clouds

DILATIONS = [1, 2, 3, 4]


def bf_render(points: torch.Tensor, view: torch.Tensor, proj: torch.Tensor, size: int,
              dilation: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brute force for one cloud and camera: (min depth, nearest index, Eq. 8 weighted depth)."""
    uv, depth = project(points[None], view[None], proj[None])
    zmin = np.full((size, size), np.inf, np.float32)
    index = np.full((size, size), -1, np.int64)
    num, den = np.zeros((size, size)), np.zeros((size, size))
    for i, ((u, v), d) in enumerate(zip(uv[0].tolist(), depth[0].tolist())):
        z = np.float32(d)
        if not (0 < z < np.inf and math.isfinite(u) and math.isfinite(v)):
            continue
        col, row = math.floor(u * size), math.floor(v * size)
        for r in range(row - (dilation - 1) // 2, row + dilation // 2 + 1):
            for c in range(col - (dilation - 1) // 2, col + dilation // 2 + 1):
                if not (0 <= r < size and 0 <= c < size):
                    continue
                if z < zmin[r, c]:  # strictly nearer: ties keep the lower index (Eqs. 9-10)
                    zmin[r, c], index[r, c] = z, i
                w = 1.0 / float(z)  # Eq. 8: w_i = 1 / z_i
                num[r, c] += w * float(z)
                den[r, c] += w
    with np.errstate(invalid="ignore", divide="ignore"):
        weighted = np.where(den > 0, num / den, np.inf).astype(np.float32)
    return zmin, index, weighted


@pytest.mark.parametrize("dilation", DILATIONS)
def test_matches_brute_force(backend, gen, dilation):
    points = unit_ball_clouds(gen, 2, 40, torch.float64)
    points[1, 5] = float("nan")  # draws nothing
    view, proj = orthogonal_views()
    got_min = render_depth(points, view, proj, image_size=10, dilation=dilation)
    got_w = render_depth(points, view, proj, image_size=10, dilation=dilation, reduction="weighted")
    assert got_min.depth.shape == got_min.index.shape == (2, 6, 10, 10)
    assert got_min.depth.dtype == torch.float32 and got_min.index.dtype == torch.int64
    for b in range(2):
        for v in range(6):
            zmin, index, weighted = bf_render(points[b], view[v].double(), proj[v].double(), 10, dilation)
            np.testing.assert_array_equal(got_min.index[b, v].numpy(), index)
            np.testing.assert_array_equal(got_min.depth[b, v].numpy(), zmin)
            np.testing.assert_array_equal(got_w.index[b, v].numpy(), index)
            np.testing.assert_array_equal(got_w.depth[b, v].numpy(), weighted)


def test_weighted_hand_computation(backend):
    # Two points on the front camera's axis at camera depths 1.2 and 3.2 (camera at z = 2.2):
    # Eq. 8 gives (1/1.2 * 1.2 + 1/3.2 * 3.2) / (1/1.2 + 1/3.2) = 2 / (1/1.2 + 1/3.2).
    view, proj = orthogonal_views()
    points = torch.tensor([[[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    maps = render_depth(points, view[:1], proj[:1], image_size=8, reduction="weighted")
    centre = maps.depth[0, 0, 4, 4].item()
    z = np.float32([3.2, 1.2]).astype(np.float64)
    assert centre == pytest.approx(2 / (1 / z[0] + 1 / z[1]), rel=1e-7)
    assert maps.index[0, 0, 4, 4] == 1 and (maps.index >= 0).sum() == 1  # the nearer point
    nearest = render_depth(points, view[:1], proj[:1], image_size=8).depth[0, 0, 4, 4]
    assert nearest == np.float32(1.2)


@pytest.mark.parametrize("dilation", DILATIONS)
def test_dilation_covers_exactly_r_by_r_pixels(backend, dilation):
    view, proj = orthogonal_views()
    point = torch.tensor([[[0.13, -0.27, 0.05]]])
    maps = render_depth(point, view[:1], proj[:1], image_size=32, dilation=dilation)
    uv, _ = project(point, view[:1], proj[:1])
    col, row = math.floor(uv[0, 0, 0].item() * 32), math.floor(uv[0, 0, 1].item() * 32)
    rows, cols = torch.nonzero(maps.index[0, 0] == 0, as_tuple=True)
    assert len(rows) == dilation**2 and torch.isfinite(maps.depth).sum() == dilation**2
    lo, hi = -((dilation - 1) // 2), dilation // 2
    assert sorted(set(rows.tolist())) == list(range(row + lo, row + hi + 1))
    assert sorted(set(cols.tolist())) == list(range(col + lo, col + hi + 1))


def test_points_land_at_the_camera_modules_pixel(backend, gen):
    # One point per cloud, so every point is drawn: it must sit at (floor(u W), floor(v H)).
    points = unit_ball_clouds(gen, 50, 1, torch.float32)
    view, proj = orthogonal_and_corner_views()
    maps = render_depth(points, view, proj, image_size=24)
    pixels = project_to_pixels(points, view, proj, 24)
    assert pixels.shape == (50, 10, 1, 3)
    for v in range(10):
        uv, depth = project(points[:, 0][None], view[v:v + 1], proj[v:v + 1])
        assert torch.equal(pixels[:, v, 0], torch.stack([uv[0, :, 0] * 24, uv[0, :, 1] * 24, depth[0]], -1))
        cols, rows = (uv[0, :, 0] * 24).floor().long(), (uv[0, :, 1] * 24).floor().long()
        for b in range(50):
            hits = torch.nonzero(maps.index[b, v] == 0).tolist()
            assert hits == [[rows[b].item(), cols[b].item()]]
            assert maps.depth[b, v, rows[b], cols[b]] == depth[0, b].float()


def test_batched_cameras_equal_per_view_calls(backend, gen):
    points = unit_ball_clouds(gen, 3, 60, torch.float32)
    view, proj = orthogonal_and_corner_views()
    per_cloud = scale_camera_distance(view, torch.tensor([[0.9], [1.0], [1.1]]))  # (3, 10, 4, 4)
    proj_b = proj.expand(3, -1, -1, -1)
    for reduction in ("min", "weighted"):
        batched = render_depth(points, per_cloud, proj_b, 16, 2, reduction)
        for b in range(3):
            for v in range(10):
                single = render_depth(points[b:b + 1], per_cloud[b, v:v + 1], proj[v:v + 1], 16, 2,
                                      reduction)
                assert torch.equal(batched.depth[b, v], single.depth[0, 0])
                assert torch.equal(batched.index[b, v], single.index[0, 0])
    shared = render_depth(points, view, proj, 16)
    expanded = render_depth(points, view.expand(3, -1, -1, -1), proj_b, 16)
    assert torch.equal(shared.depth, expanded.depth) and torch.equal(shared.index, expanded.index)


def test_nan_points_draw_nothing(backend, gen):
    clean = unit_ball_clouds(gen, 1, 30, torch.float32)
    keep = torch.ones(36, dtype=torch.bool)
    keep[[0, 7, 8, 20, 33, 35]] = False
    dirty = torch.full((1, 36, 3), float("nan"))
    dirty[0, keep] = clean[0]
    dirty[0, 20, 0] = 0.1  # one finite coordinate is not enough
    view, proj = orthogonal_views()
    want = render_depth(clean, view, proj, 16, 3)
    got = render_depth(dirty, view, proj, 16, 3)
    position = torch.nonzero(keep).squeeze(1)  # clean index -> dirty index
    assert torch.equal(got.depth, want.depth)
    assert torch.equal(got.index, torch.where(want.index >= 0, position[want.index.clamp_min(0)], -1))
    all_nan = render_depth(torch.full((2, 5, 3), float("nan")), view, proj, 8)
    assert torch.isinf(all_nan.depth).all() and (all_nan.index == -1).all()
    empty = render_depth(torch.zeros(2, 0, 3), view, proj, 8)
    assert empty.depth.shape == (2, 6, 8, 8) and torch.isinf(empty.depth).all()


def test_depth_to_image_formula():
    inf = float("inf")
    depth = torch.tensor([[[[1.0, 2.0], [3.0, inf]], [[inf, inf], [inf, inf]]]])  # (1, 2, 2, 2)
    image = depth_to_image(depth, background=0.25)
    assert image.shape == (1, 2, 3, 2, 2)
    mean, std = torch.tensor(CLIP_MEAN).view(3, 1, 1), torch.tensor(CLIP_STD).view(3, 1, 1)
    grey = image * std + mean  # undo the standardisation
    want = torch.tensor([[1.0, 0.5], [0.0, 0.25]])  # near bright: 1 - (d - 1) / (3 - 1)
    torch.testing.assert_close(grey[0, 0], want.expand(3, 2, 2), rtol=0, atol=1e-6)
    torch.testing.assert_close(grey[0, 1], torch.full((3, 2, 2), 0.25), rtol=0, atol=1e-6)  # empty
    assert image[0, 0, :, 0, 0].tolist() == pytest.approx(
        [(1 - m) / s for m, s in zip(CLIP_MEAN, CLIP_STD)], rel=1e-6)
    far_bright = depth_to_image(depth, near_bright=False, mean=(0, 0, 0), std=(1, 1, 1))
    assert far_bright[0, 0, 1].tolist() == [[0.0, 0.5], [1.0, 0.0]]
    raw = depth_to_image(depth, background=-1, normalise="none", near_bright=False, mean=(0.5, 0, 0),
                         std=(2, 1, 1))
    assert raw[0, 0, 0].tolist() == [[0.25, 0.75], [1.25, -0.75]] and raw[0, 0, 1, 1, 0] == 3.0
    inverse = depth_to_image(depth, normalise="none", mean=(0, 0, 0), std=(1, 1, 1))
    torch.testing.assert_close(inverse[0, 0, 2], torch.tensor([[1.0, 0.5], [1 / 3, 0.0]]))


def test_depth_to_image_single_depth_and_range(gen):
    single = depth_to_image(torch.full((1, 1, 3, 3), 2.0), mean=(0, 0, 0), std=(1, 1, 1))
    assert (single == 1).all()  # one depth: everything is "nearest"
    depth = torch.rand(2, 3, 8, 8, generator=gen) + 1
    depth[depth > 1.7] = float("inf")
    grey = depth_to_image(depth, background=-5.0, mean=(0, 0, 0), std=(1, 1, 1))
    covered = torch.isfinite(depth).unsqueeze(2).expand_as(grey)
    assert grey[covered].min() == 0 and grey[covered].max() == 1
    assert (grey[~covered] == -5).all()
    assert (grey.amax(dim=(-2, -1)) == 1).all() and (grey.where(covered, 2).amin(dim=(-2, -1)) == 0).all()


def test_scale_camera_distance_keeps_direction():
    view, proj = orthogonal_and_corner_views()
    scaled = scale_camera_distance(view, 1.25)
    rotation = view[:, :3, :3]
    centre = -(rotation.transpose(1, 2) @ view[:, :3, 3:]).squeeze(-1)  # c = -R^T t
    moved = -(rotation.transpose(1, 2) @ scaled[:, :3, 3:]).squeeze(-1)
    torch.testing.assert_close(moved, 1.25 * centre)
    torch.testing.assert_close(moved.norm(dim=-1), torch.full((10,), 1.25 * 2.2))
    assert torch.equal(scaled[:, :3, :3], rotation) and torch.equal(scaled[:, 3], view[:, 3])
    uv, depth = project(torch.zeros(10, 1, 3), scaled, proj)  # still looks at the origin
    torch.testing.assert_close(uv, torch.full((10, 1, 2), 0.5))
    torch.testing.assert_close(depth, torch.full((10, 1), 2.75))
    per_cloud = scale_camera_distance(view, torch.tensor([[0.9], [1.1]]))
    assert per_cloud.shape == (2, 10, 4, 4)
    torch.testing.assert_close(per_cloud[1], scale_camera_distance(view, 1.1))
    with pytest.raises(ValueError, match="positive"):
        scale_camera_distance(view, 0.0)


def test_sample_distance_scales_range():
    assert DISTANCE_JITTER == (0.9, 1.1)
    scales = sample_distance_scales(20000, torch.Generator().manual_seed(3))
    assert scales.shape == (20000,) and scales.dtype == torch.float32
    assert scales.min() >= 0.9 and scales.max() < 1.1
    assert scales.min() < 0.901 and scales.max() > 1.099  # spans the interval
    again = sample_distance_scales(20000, torch.Generator().manual_seed(3))
    assert torch.equal(scales, again)
    narrow = sample_distance_scales(100, torch.Generator().manual_seed(0), low=1.0, high=1.0 + 1e-9)
    assert (narrow == 1.0).all()  # float32 cannot represent the open bound: clamped below it
    with pytest.raises(ValueError, match="0 < low < high"):
        sample_distance_scales(4, low=1.1, high=0.9)


def test_depth_renderer_equals_functional_api(gen):
    points = unit_ball_clouds(gen, 2, 200, torch.float32)
    renderer = DepthRenderer(image_size=32, dilation=2, reduction="weighted", views="orthogonal_corner10",
                             background=0.1, near_bright=False)
    images = renderer(points)
    assert images.shape == (2, 10, 3, 32, 32) and renderer.num_views == 10
    view, proj = orthogonal_and_corner_views()
    maps = render_depth(points, view, proj, 32, 2, "weighted")
    assert torch.equal(images, depth_to_image(maps.depth, 0.1, "per_image", False))
    scales = torch.tensor([0.9, 1.1])
    jittered = renderer(points, distance_scale=scales)
    want = render_depth(points, scale_camera_distance(view, scales[:, None]), proj, 32, 2, "weighted")
    assert torch.equal(jittered, depth_to_image(want.depth, 0.1, "per_image", False))
    assert not torch.equal(jittered, images)
    assert renderer.state_dict() == {}  # cameras are rebuilt from the config, not checkpointed


@pytest.mark.parametrize("kwargs,fragment", [
    ({"reduction": "mean"}, "unknown reduction 'mean'; use one of 'min', 'weighted'"),
    ({"views": "cube"}, "unknown views 'cube'; use one of 'orthogonal6', 'orthogonal_corner10'"),
    ({"normalise": "global"}, "unknown normalise 'global'; use one of 'per_image', 'min_over_max', 'none'"),
    ({"dilation": 0}, "`dilation` must be >= 1"),
    ({"image_size": 2.5}, "`image_size` must be an int"),
    ({"std": (1.0, 0.0, 1.0)}, "`mean` and `std` must hold 3 values"),
])
def test_invalid_config_raises_value_error(kwargs, fragment):
    with pytest.raises(ValueError) as info:
        DepthRenderer(**kwargs)
    assert fragment in str(info.value)


def test_invalid_inputs_raise_one_sentence():
    view, proj = orthogonal_views()
    with pytest.raises(BadInputError, match=r"`points` must be a \(B, N, 3\) tensor, got \(5, 3\)"):
        render_depth(torch.rand(5, 3), view, proj)
    with pytest.raises(BadInputError, match=r"`view` must have shape \(V, 4, 4\) or \(B=2, V, 4, 4\)"):
        render_depth(torch.rand(2, 5, 3), view.expand(3, -1, -1, -1), proj)
    with pytest.raises(BadInputError, match="`view` has 6 cameras but `proj` has 1"):
        render_depth(torch.rand(2, 5, 3), view, proj[:1])
    with pytest.raises(ValueError, match="unknown reduction 'max'"):
        render_depth(torch.rand(2, 5, 3), view, proj, reduction="max")
