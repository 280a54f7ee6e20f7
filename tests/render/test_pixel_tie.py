"""Renderer, point-to-pixel mapping and rotation augmentation agree pixel for pixel.

Every pixel the renderer gives to point k lies in the S x S cell ``points_to_cells`` predicts
for k (S = 7 at 224 px, footprint 1), and rotating the points with the view compensated
leaves both the index map and the cells unchanged. Rotating changes the floating-point
rounding of the projection, so that check runs in float64, where a point would have to lie
within ~1e-13 pixels of a pixel border to move.
"""

from __future__ import annotations

import torch

from plugin.render.cameras import compensate_rotation, rotation_of
from plugin.render.mapping import points_to_cells
from plugin.render.point_renderer import render_points
from plugin.render.view_sets import dodecahedron_views

from .random_geometry import random_rotations, unit_ball_clouds

SIZE, GRID = 224, 7


def _pixel_cells(index: torch.Tensor) -> torch.Tensor:
    """(B, H, W) cell of every pixel: (row // 32) * 7 + col // 32."""
    step = SIZE // GRID
    rows = torch.arange(SIZE).view(SIZE, 1) // step
    cols = torch.arange(SIZE).view(1, SIZE) // step
    return (rows * GRID + cols).expand_as(index)


def _check_pixels_in_predicted_cells(points: torch.Tensor, view: torch.Tensor,
                                     proj: torch.Tensor) -> None:
    _, index = render_points(points, view, proj, image_size=SIZE, radius_px=0)
    cell, inside = points_to_cells(points, view, proj, GRID)
    drawn = index >= 0
    winner = index.clamp_min(0).flatten(1)
    assert torch.equal(cell.gather(1, winner).view_as(index)[drawn], _pixel_cells(index)[drawn])
    assert inside.gather(1, winner).view_as(index)[drawn].all()
    assert drawn.sum(dim=(1, 2)).min() > 100  # the check is not vacuous


def _unproject(uv: torch.Tensor, depth: float, view: torch.Tensor,
               proj: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) world points that camera b sees at image coordinates uv (B, N, 2), in float64."""
    view, proj = view.double(), proj.double()
    x_ndc, y_ndc = 2 * uv[..., 0] - 1, 1 - 2 * uv[..., 1]
    cam = torch.stack([x_ndc * depth / proj[:, None, 0, 0], y_ndc * depth / proj[:, None, 1, 1],
                       torch.full_like(x_ndc, -depth)], dim=-1)
    return (cam - view[:, None, :3, 3]) @ rotation_of(view)


def test_rendered_pixels_lie_in_the_predicted_cells(gen):
    view, proj = dodecahedron_views()
    _check_pixels_in_predicted_cells(unit_ball_clouds(gen, 20, 2048, torch.float32), view, proj)


def test_points_on_cell_borders_stay_consistent():
    # Image coordinates on and a hair off every cell border: the floors must agree there.
    view, proj = dodecahedron_views()
    border = torch.arange(GRID + 1, dtype=torch.float64) / GRID
    offsets = torch.tensor([-1e-6, -1e-7, 0.0, 1e-7, 1e-6], dtype=torch.float64)
    coords = (border[:, None] + offsets).flatten().clamp(0, 1 - 1e-9)
    u, v = torch.meshgrid(coords, coords, indexing="xy")
    uv = torch.stack([u.flatten(), v.flatten()], dim=-1).expand(20, -1, -1)
    points = _unproject(uv, 2.2, view, proj).float()
    _check_pixels_in_predicted_cells(points, view, proj)


def test_rotation_with_compensated_view_changes_nothing(gen):
    view, proj = (m.double() for m in dodecahedron_views())
    points = unit_ball_clouds(gen, 20, 2048, torch.float64)
    rotation = random_rotations(gen, 20, torch.float64)
    rotated = points @ rotation.transpose(1, 2)
    compensated = compensate_rotation(view, rotation)
    for radius in (0, 1):
        _, index = render_points(points, view, proj, image_size=SIZE, radius_px=radius)
        _, index_rotated = render_points(rotated, compensated, proj, image_size=SIZE,
                                         radius_px=radius)
        assert torch.equal(index, index_rotated)
    cell, inside = points_to_cells(points, view, proj, GRID)
    cell_rotated, inside_rotated = points_to_cells(rotated, compensated, proj, GRID)
    assert torch.equal(cell, cell_rotated) and torch.equal(inside, inside_rotated)
    assert inside.float().mean() > 0.9
