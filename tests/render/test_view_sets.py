"""View sets: dodecahedron (Pic@Point), orthogonal and corner views (CLIP2Point)."""

from __future__ import annotations

import math

import pytest
import torch

from plugin.render.cameras import project, rotation_of
from plugin.render.view_sets import (
    dodecahedron_views,
    orthogonal_and_corner_views,
    orthogonal_views,
    views_from_directions,
)

from .random_geometry import unit_ball_clouds


def _camera_centres(view: torch.Tensor) -> torch.Tensor:
    """World positions -R^T t of the cameras."""
    rotation = rotation_of(view).double()
    return -(rotation.transpose(1, 2) @ view[:, :3, 3:].double())[..., 0]


def _sees_origin_at_centre(view: torch.Tensor, proj: torch.Tensor, distance: float) -> None:
    uv, depth = project(torch.zeros(len(view), 1, 3), view, proj)
    torch.testing.assert_close(uv, torch.full_like(uv, 0.5))
    torch.testing.assert_close(depth, torch.full_like(depth, distance))


def test_dodecahedron_has_20_equally_spaced_cameras():
    view, proj = dodecahedron_views(distance=3.0)
    assert view.shape == proj.shape == (20, 4, 4) and view.dtype == torch.float32
    centres = _camera_centres(view)
    torch.testing.assert_close(centres.norm(dim=-1), torch.full((20,), 3.0, dtype=torch.float64))
    unit = centres / centres.norm(dim=-1, keepdim=True)
    angles = torch.rad2deg(torch.acos((unit @ unit.T).clamp(-1, 1)))
    angles.fill_diagonal_(float("inf"))
    assert angles.min() > 40  # 20 distinct directions
    nearest = angles.min(dim=1).values
    phi = (1 + math.sqrt(5)) / 2
    edge_angle = math.degrees(2 * math.asin(1 / (phi * math.sqrt(3))))  # 41.81 degrees
    torch.testing.assert_close(nearest, torch.full_like(nearest, edge_angle), rtol=0, atol=1e-4)
    assert ((angles - edge_angle).abs() < 1e-4).sum(dim=1).tolist() == [3] * 20  # 3 neighbours


@pytest.mark.parametrize("views", [dodecahedron_views, orthogonal_views,
                                   orthogonal_and_corner_views])
def test_every_camera_sees_the_origin_at_the_image_centre(views):
    view, proj = views(distance=2.5, fov_deg=50.0)
    _sees_origin_at_centre(view, proj, 2.5)


def test_orthogonal_views_order_and_corners():
    view, _ = orthogonal_views()
    directions = _camera_centres(view) / 2.2
    want = [[0, 0, 1], [0, 0, -1], [-1, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0]]
    torch.testing.assert_close(directions, torch.tensor(want, dtype=torch.float64),
                               rtol=0, atol=1e-6)
    view10, _ = orthogonal_and_corner_views()
    assert view10.shape == (10, 4, 4)
    torch.testing.assert_close(view10[:6], view)
    corners = _camera_centres(view10[6:])
    assert (corners[:, 1] > 0).all()  # the corner cameras look down on the object
    torch.testing.assert_close(corners.abs(), torch.full((4, 3), 2.2 / math.sqrt(3),
                                                         dtype=torch.float64))


def test_top_and_bottom_cameras_fall_back_to_another_up():
    view, _ = orthogonal_views()
    up_in_world = rotation_of(view)[:, 1]  # camera +Y in world coordinates
    torch.testing.assert_close(up_in_world[:4, 1], torch.ones(4))  # world +Y is up
    torch.testing.assert_close(up_in_world[4:], torch.tensor([[0.0, 0.0, -1.0]] * 2))


def test_default_framing_fills_most_of_the_image(gen):
    view, proj = dodecahedron_views()
    surface = unit_ball_clouds(gen, 20, 4000, torch.float32)
    surface = surface / surface.norm(dim=-1, keepdim=True)  # on the unit sphere
    uv, depth = project(surface, view, proj)
    assert (depth > 0).all() and (uv > 0).all() and (uv < 1).all()
    extent = (uv - 0.5).abs().amax(dim=(1, 2))
    assert (extent > 0.4).all()  # the sphere spans > 80% of the image


def test_views_from_directions_rejects_bad_distance():
    with pytest.raises(ValueError, match="`distance` must be positive"):
        views_from_directions(torch.eye(3), distance=0.0)
