"""Cameras, view sets, point-to-pixel mapping and the point renderer (pure geometry, no nn.Module).

The camera convention is stated once, in :mod:`plugin.render.cameras`.
"""
from .cameras import compensate_rotation, look_at, perspective, project, rotation_of
from .mapping import points_to_cells
from .point_renderer import render_points, save_png
from .view_sets import (
    dodecahedron_views,
    orthogonal_and_corner_views,
    orthogonal_views,
    views_from_directions,
)

__all__ = [
    "compensate_rotation",
    "dodecahedron_views",
    "look_at",
    "orthogonal_and_corner_views",
    "orthogonal_views",
    "perspective",
    "points_to_cells",
    "project",
    "render_points",
    "rotation_of",
    "save_png",
    "views_from_directions",
]
