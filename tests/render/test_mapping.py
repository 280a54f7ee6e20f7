"""points_to_cells: row-major S x S cells, and flags for points outside or behind."""

from __future__ import annotations

import pytest
import torch

from plugin.render.cameras import look_at, perspective
from plugin.render.mapping import points_to_cells

VIEW = look_at(torch.tensor([[0.0, 0.0, 2.0]]))  # looks down -Z at the origin, +Y up
PROJ = perspective(90.0, 0.1, 10.0).unsqueeze(0)  # at z = 0 the image spans x, y in [-2, 2]


def _cells(points: list[list[float]], grid_size: int = 7) -> tuple[list[int], list[bool]]:
    cell, inside = points_to_cells(torch.tensor([points]), VIEW, PROJ, grid_size)
    assert cell.dtype == torch.int64 and inside.dtype == torch.bool
    return cell[0].tolist(), inside[0].tolist()


def test_cells_are_row_major_from_the_top_left():
    cell, inside = _cells([
        [0.0, 0.0, 0.0],  # centre: row 3, col 3
        [-1.9, 1.9, 0.0],  # top-left
        [1.9, 1.9, 0.0],  # top-right
        [-1.9, -1.9, 0.0],  # bottom-left
        [1.9, -1.9, 0.0],  # bottom-right
        [0.7, 0.0, 0.0],  # u = 0.675 -> col 4
        [0.0, 0.7, 0.0],  # v = 0.325 -> row 2
    ])
    assert inside == [True] * 7
    assert cell == [24, 0, 6, 42, 48, 25, 17]


def test_grid_size_changes_the_resolution():
    cell, _ = _cells([[0.0, 0.0, 0.0], [1.9, -1.9, 0.0]], grid_size=2)
    assert cell == [3, 3]  # u = v = 0.5 is the first column/row of the second half


def test_outside_and_behind_points_are_flagged_with_cell_zero():
    cell, inside = _cells([
        [2.1, 0.0, 0.0],  # right of the image
        [0.0, -2.1, 0.0],  # below the image
        [-2.1, 2.1, 0.0],  # above-left
        [0.0, 0.0, 3.0],  # behind the camera (camera at z = 2)
        [0.0, 0.0, 2.0],  # at the camera: depth 0
        [1.0, 1.0, 0.0],  # inside
    ])
    assert inside == [False] * 5 + [True]
    assert cell[:5] == [0] * 5 and cell[5] == 12  # row 1 (v = 0.25), col 5 (u = 0.75)


@pytest.mark.parametrize("grid_size", [0, -7, 7.0])
def test_invalid_grid_size(grid_size):
    with pytest.raises(ValueError, match="grid_size"):
        points_to_cells(torch.zeros(1, 1, 3), VIEW, PROJ, grid_size)
