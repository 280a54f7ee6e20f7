"""Cameras, view sets, point-to-pixel mapping, the point renderer, CLIP2Point's depth renderer and
I2P-MAE's orthographic views.

The camera convention is stated once, in :mod:`plugin.render.cameras`.
"""
from .cameras import compensate_rotation, look_at, perspective, project, rotation_of
from .depth_renderer import DepthMaps, DepthRenderer, depth_to_image, project_to_pixels, render_depth
from .mapping import points_to_cells
from .orthographic_views import (
    OrthographicGrid,
    fit_orthographic_grid,
    point_pixels,
    read_maps,
    render_orthographic_views,
)
from .point_renderer import render_points, save_png
from .view_sets import (
    DISTANCE_JITTER,
    dodecahedron_views,
    orthogonal_and_corner_views,
    orthogonal_views,
    sample_distance_scales,
    scale_camera_distance,
    views_from_directions,
)

__all__ = [
    "DISTANCE_JITTER",
    "DepthMaps",
    "DepthRenderer",
    "OrthographicGrid",
    "compensate_rotation",
    "depth_to_image",
    "dodecahedron_views",
    "fit_orthographic_grid",
    "look_at",
    "orthogonal_and_corner_views",
    "orthogonal_views",
    "perspective",
    "point_pixels",
    "points_to_cells",
    "project",
    "project_to_pixels",
    "read_maps",
    "render_depth",
    "render_orthographic_views",
    "render_points",
    "rotation_of",
    "sample_distance_scales",
    "save_png",
    "scale_camera_distance",
    "views_from_directions",
]
