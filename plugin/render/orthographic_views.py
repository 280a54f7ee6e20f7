"""I2P-MAE's three orthographic depth views and the point-to-pixel mapping that reads them back.

I2P-MAE (Zhang et al., CVPR 2023; upstream ``proj2img``, "Efficient Projection") projects a
cloud along its three coordinate axes without any camera: view ``k`` permutes the coordinates to
``(a, b, d)``; the image row comes from ``a``, the column from ``b``, the pixel value from the
depth ``d``:

=====  ===========  ==============  ========
view   rows (a)     columns (b)     depth d
=====  ===========  ==============  ========
0      x            y               z
1      z            x               y
2      y            z               x
=====  ===========  ==============  ========

Per sample and view, one square cell ``max(range_a, range_b) / (size - 3)`` keeps the aspect
ratio; a point falls in cell ``floor((p - min) / cell)`` and is shifted by a whole number of
pixels that centres the object. Each point is splatted over a 5 x 5 pixel block with its depth;
the depths landing on a pixel are summed (no z-buffer, the native ``splat_sum_depth`` op); a
sigmoid maps the sums to (0, 1), so empty background reads exactly 0.5; the value is repeated
over three channels.

:func:`point_pixels` is the only place where coordinates become pixels: the renderer splats the
cloud at ``point_pixels(cloud, grid)``, and any other points (token centres, patch members) are
read at ``point_pixels(points, grid)`` with the same :class:`OrthographicGrid`, so a point lies
exactly on its own splat's centre by construction, not by two computations agreeing.

Choices against the upstream code (``ZrrSkywalker/I2P-MAE``, ``models/I2P_MAE.py``,
``proj2img`` / ``I2P``), all documented here:

- Same arithmetic: ``cell = max(range) / (size - 3)`` in the points' dtype, ``idx = floor((p -
  min) / cell)``, the object centred with ``shift = size // 2 - floor((max_idx + min_idx + 2 +
  lo + hi) / 2)`` where ``lo, hi = -(block - 1) // 2, block // 2`` (upstream's ``+1`` and
  ``img_size / 2 - centre - 1`` folded together; for ``block = 5`` it is ``111 - floor((max_idx
  + min_idx) / 2)``). The first permuted axis indexes rows, as upstream's ``idx[..., 0] * 224 +
  idx[..., 1]``.
- Borders: with a 5 x 5 block the extreme points' blocks reach one pixel past the image on the
  longest axis (``size - 3`` was sized for a 3 x 3 block). Upstream folds those pixels back onto
  the edge row/column (counting them twice); here they are clipped (dropped), as in every native
  splat op. Only the outermost ring of pixels can differ.
- A degenerate cloud (zero extent on both image axes) gets the smallest positive cell instead of
  dividing by zero; it draws one block in the centre.
- :func:`read_maps` clamps pixels to the image where upstream asserts; points inside the cloud's
  bounding box never need it.
- No CLIP mean/std normalisation here (upstream applies it right after the sigmoid); the image
  encoder's preprocessing owns that step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import BadInputError
from ..ops import ops

__all__ = [
    "IMAGE_SIZE",
    "SPLAT_BLOCK",
    "VIEW_AXES",
    "OrthographicGrid",
    "fit_orthographic_grid",
    "permute_views",
    "point_pixels",
    "read_maps",
    "render_orthographic_views",
]

IMAGE_SIZE = 224  # I2P-MAE's image side
SPLAT_BLOCK = 5  # side of the pixel block each point covers
VIEW_AXES = ((0, 1, 2), (2, 0, 1), (1, 2, 0))  # (row axis, column axis, depth axis) per view
_MARGIN = 3  # cell = max range / (size - 3), as upstream


@dataclass(frozen=True)
class OrthographicGrid:
    """Where each view's pixels lie: ``pixel = floor((p_ab - origin) / cell) + shift``.

    Attributes:
        origin: (B, V, 2) minimum of the cloud along the (row, column) axes of each view.
        cell: (B, V) side of one pixel in scene units.
        shift: (B, V, 2) int64 pixel shift (row, column) that centres the object.
        size: image side in pixels.
        block: side of the splat block in pixels.
    """

    origin: Tensor
    cell: Tensor
    shift: Tensor
    size: int
    block: int


def permute_views(points: Tensor) -> Tensor:
    """Return (B, V, N, 3) coordinates ``(a, b, depth)`` of each view in :data:`VIEW_AXES`.

    Args:
        points: (B, N, 3) points.
    """
    if points.dim() != 3 or points.shape[-1] != 3 or not points.is_floating_point():
        raise BadInputError(
            f"`points` must be a floating (B, N, 3) tensor, got {tuple(points.shape)} {points.dtype}."
        )
    return torch.stack([points[..., list(axes)] for axes in VIEW_AXES], dim=1)


def _cells(view_points: Tensor, origin: Tensor, cell: Tensor) -> Tensor:
    """Integer cell (B, V, N, 2) of each point: ``floor((p_ab - origin) / cell)``, as a float."""
    return torch.floor((view_points[..., :2] - origin.unsqueeze(2)) / cell[..., None, None])


def fit_orthographic_grid(
    points: Tensor, size: int = IMAGE_SIZE, block: int = SPLAT_BLOCK
) -> OrthographicGrid:
    """Fit I2P-MAE's per-sample, per-view pixel grid to a cloud.

    Args:
        points: (B, N, 3) the cloud that is rendered, N >= 1.
        size: image side in pixels, > 3.
        block: side of each point's splat block, >= 1.

    Returns:
        The :class:`OrthographicGrid` that :func:`point_pixels` and the renderer share.
    """
    if size <= _MARGIN or block < 1:
        raise BadInputError(f"need size > {_MARGIN} and block >= 1, got size={size}, block={block}.")
    view_points = permute_views(points)[..., :2]  # (B, V, N, 2)
    if points.shape[1] < 1 or not bool(points.isfinite().all()):
        raise BadInputError("the cloud must have at least one point and only finite coordinates.")
    origin = view_points.amin(dim=2)
    extent = view_points.amax(dim=2) - origin
    cell = extent.amax(dim=-1) / (size - _MARGIN)  # aspect kept: one square cell per view
    cell = cell.clamp_min(torch.finfo(cell.dtype).tiny)
    idx = _cells(view_points, origin, cell)
    lo, hi = -((block - 1) // 2), block // 2
    centre = torch.floor((idx.amax(dim=2) + idx.amin(dim=2) + 2 + lo + hi) / 2)
    shift = (size // 2 - centre).long()
    return OrthographicGrid(origin=origin, cell=cell, shift=shift, size=size, block=block)


def point_pixels(points: Tensor, grid: OrthographicGrid) -> Tensor:
    """Integer pixel ``(row, column)`` of any points in each view, by the renderer's arithmetic.

    Args:
        points: (B, M, 3) points in the frame of the rendered cloud (e.g. token centres).
        grid: the grid the views were rendered with.

    Returns:
        (B, V, M, 2) int64 ``(row, column)``; may lie outside the image for points outside the
        cloud's bounding box.
    """
    idx = _cells(permute_views(points), grid.origin, grid.cell)
    return idx.long() + grid.shift.unsqueeze(2)


@torch.no_grad()
def render_orthographic_views(
    points: Tensor, size: int = IMAGE_SIZE, block: int = SPLAT_BLOCK
) -> tuple[Tensor, OrthographicGrid]:
    """Render I2P-MAE's three orthographic depth views.

    Args:
        points: (B, N, 3) clouds.
        size: image side in pixels (224 in I2P-MAE).
        block: side of each point's splat block (5 in I2P-MAE).

    Returns:
        ``(images, grid)``: (B, V=3, 3, size, size) float32 ``sigmoid(sum of depths)``, 0.5 on
        the background, the value repeated over the three channels; and the
        :class:`OrthographicGrid` to map other points with :func:`point_pixels`.
    """
    grid = fit_orthographic_grid(points, size, block)
    pixels = point_pixels(points, grid)  # (B, V, N, 2) (row, column)
    depth = permute_views(points)[..., 2]
    b, v, n = depth.shape
    col, row = pixels[..., 1].to(depth.dtype), pixels[..., 0].to(depth.dtype)
    splat_input = torch.stack([col, row, depth], dim=-1)  # the ops' [col, row, depth] layout
    sums, _ = ops.splat_sum_depth(splat_input.reshape(b * v, n, 3), size, size, block)
    images = torch.sigmoid(sums).view(b, v, 1, size, size).expand(-1, -1, 3, -1, -1)
    return images.contiguous(), grid


def _bicubic_taps(length: int, size: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """Source indices and weights (size, 4) of ``F.interpolate(mode="bicubic")`` along one axis.

    Read off the operator itself (upsampling the identity), so border clamping and PyTorch's
    coefficients are exactly those of ``F.interpolate``; rows with fewer than four distinct
    sources (borders) carry zero weights in the spare taps.
    """
    eye = torch.eye(length, dtype=like.dtype, device=like.device).view(length, 1, length, 1)
    matrix = F.interpolate(eye, size=(size, 1), mode="bicubic")[:, 0, :, 0].T  # (size, length)
    taps = min(4, length)
    index = matrix.abs().topk(taps, dim=1).indices
    return index, matrix.gather(1, index)


def read_maps(maps: Tensor, pixels: Tensor, size: int = IMAGE_SIZE) -> Tensor:
    """Upsample 2D maps to the image size (bicubic) and read them at integer pixels.

    Upstream's ``I2P`` back-projection: ``F.interpolate(mode="bicubic")`` to ``size x size``, then a
    gather at each point's pixel. Evaluated only at the pixels asked for, through the separable
    4 x 4 bicubic taps, so no (B, V, C, size, size) tensor is built; equal to upsampling then
    gathering up to float rounding (exactly, when the maps already have the image size). Pixels
    outside the image are clamped to its border.

    Args:
        maps: (B, V, C, h, w) per-view feature or attention maps.
        pixels: (B, V, M, 2) int64 ``(row, column)`` from :func:`point_pixels`.
        size: image side the pixels refer to.

    Returns:
        (B, V, M, C) the upsampled maps' values at the pixels (differentiable w.r.t. ``maps``).
    """
    if maps.dim() != 5 or pixels.dim() != 4 or pixels.shape[:2] != maps.shape[:2]:
        raise BadInputError(
            f"need maps (B, V, C, h, w) and pixels (B, V, M, 2) with matching B, V; "
            f"got {tuple(maps.shape)} and {tuple(pixels.shape)}"
        )
    b, v, c, h, w = maps.shape
    m = pixels.shape[2]
    pixels = pixels.clamp(0, size - 1).reshape(b * v, m, 2)
    row_index, row_weight = _bicubic_taps(h, size, maps)
    col_index, col_weight = _bicubic_taps(w, size, maps)
    rows, cols = row_index[pixels[..., 0]], col_index[pixels[..., 1]]  # (BV, M, taps)
    row_w, col_w = row_weight[pixels[..., 0]], col_weight[pixels[..., 1]]
    flat = maps.reshape(b * v, c, h * w)
    values = maps.new_zeros(b * v, c, m)
    for i in range(rows.shape[-1]):
        for j in range(cols.shape[-1]):
            source = (rows[..., i] * w + cols[..., j]).unsqueeze(1).expand(-1, c, -1)
            values = values + flat.gather(2, source) * (row_w[..., i] * col_w[..., j]).unsqueeze(1)
    return values.view(b, v, c, m).transpose(2, 3)
