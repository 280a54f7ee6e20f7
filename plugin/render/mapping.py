"""Point-to-pixel mapping: the image feature-grid cell each 3D point projects into.

Uses :func:`.cameras.project`, the projection the renderer rasterises, so a point's cell is the
cell of every pixel it wins when the grid size divides the image size by a power of two
(e.g. S = 7 at 224 px); ``tests/render`` checks this pixel for pixel.
"""

from __future__ import annotations

import operator

import torch
from torch import Tensor

from .cameras import project

__all__ = ["points_to_cells"]


def points_to_cells(
    points: Tensor, view: Tensor, proj: Tensor, grid_size: int
) -> tuple[Tensor, Tensor]:
    """Top-level S x S feature-grid cell of each point (row-major, like ``(B, C, S*S)``).

    Args:
        points: (B, L, 3) world coordinates (e.g. the centres of a 3D encoder's last stage).
        view: (B, 4, 4) world-to-camera matrices of the images.
        proj: (B, 4, 4) camera-to-clip matrices.
        grid_size: S, the side of the image feature map (7 at 224 px for ResNet-18 and
            EfficientNet-Lite0).

    Returns:
        ``(cell, inside)``: (B, L) int64 ``row * S + col`` with ``row = floor(v * S)`` and
        ``col = floor(u * S)``, and (B, L) bool, False for points outside the image or behind
        the camera (their ``cell`` is 0).
    """
    try:
        size = operator.index(grid_size)
    except TypeError:
        raise ValueError(f"`grid_size` must be an int, got {type(grid_size).__name__}.") from None
    if size <= 0:
        raise ValueError(f"`grid_size` must be positive, got {size}; pass e.g. 7.")
    # Pic@Point Sec. 3.3: a point's 2D counterpart is the feature cell its projection falls in.
    uv, depth = project(points, view, proj)
    u, v = uv.unbind(-1)
    inside = (u >= 0) & (u < 1) & (v >= 0) & (v < 1) & (depth > 0)
    col = torch.where(inside, u * size, 0).floor().long()
    row = torch.where(inside, v * size, 0).floor().long()
    return torch.where(inside, row * size + col, 0), inside
