"""Point-cloud splat renderer: shaded images plus the pixel-to-point index map.

Points are projected with :func:`.cameras.project` and z-buffered by the native
``rasterize_points`` op, each covering a (2 r + 1)^2 pixel square. A pixel shows the nearest
covering point, grey-shaded by Lambert's law under a headlight (with normals) or by depth.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..ops import ops
from .cameras import project, rotation_of

__all__ = ["render_points", "save_png"]

ALBEDO = 0.8  # grey level of a fully lit point (stays distinct from a white background)
AMBIENT = 0.1  # share of the albedo that unlit points keep


def _shade(light: Tensor) -> Tensor:
    """Grey level of points receiving ``light`` in [0, 1]: ambient plus diffuse share."""
    return ALBEDO * (AMBIENT + (1 - AMBIENT) * light)


def _lambert(normals: Tensor, view: Tensor) -> Tensor:
    """|n . l| per point (B, N) for a headlight: the light travels along the viewing axis."""
    n_cam = normals @ rotation_of(view).transpose(1, 2)
    n_cam = n_cam / n_cam.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return n_cam[..., 2].abs()  # the light direction is the camera's Z axis


def _depth_light(zbuf: Tensor, covered: Tensor) -> Tensor:
    """Per-pixel light (B, H, W) from depth: 1 at the nearest covered pixel, 0 at the farthest."""
    near = torch.where(covered, zbuf, torch.inf).amin(dim=(1, 2), keepdim=True)
    far = torch.where(covered, zbuf, -torch.inf).amax(dim=(1, 2), keepdim=True)
    light = 1 - (zbuf - near) / (far - near).clamp_min(1e-12)
    return torch.where(covered, light, 0)


def render_points(
    points: Tensor, view: Tensor, proj: Tensor, normals: Tensor | None = None,
    image_size: int = 224, radius_px: int = 1,
    background: Sequence[float] = (1.0, 1.0, 1.0),
) -> tuple[Tensor, Tensor]:
    """Render one image per cloud and camera.

    Args:
        points: (B, N, 3) world coordinates.
        view: (B, 4, 4) world-to-camera matrices.
        proj: (B, 4, 4) camera-to-clip matrices (aspect 1: images are square).
        normals: optional (B, N, 3) world-space normals; enable Lambert shading, otherwise
            pixels are shaded by depth (nearer is brighter, normalised per image).
        image_size: side H = W of the images in pixels.
        radius_px: splat radius r; each point covers a (2 r + 1)^2 pixel square.
        background: RGB in [0, 1] of pixels no point covers.

    Returns:
        ``(image, index)``: (B, 3, H, W) images in [0, 1] in the points' dtype, and (B, H, W)
        int64 index of the point each pixel shows (-1 for background).
    """
    size, radius = operator.index(image_size), operator.index(radius_px)
    if size <= 0 or radius < 0:
        raise ValueError(
            f"need image_size >= 1 and radius_px >= 0, got {size} and {radius}; fix the arguments."
        )
    uv, depth = project(points, view, proj)
    # Continuous pixel coordinates [col, row, depth]: pixel (floor(col), floor(row)).
    pixels = torch.stack([uv[..., 0] * size, uv[..., 1] * size, depth], dim=-1)
    zbuf, index = ops.rasterize_points(pixels, size, size, 2 * radius + 1)
    covered = index >= 0
    if normals is None:
        grey = _shade(_depth_light(zbuf, covered).to(points.dtype))
    else:
        per_point = _shade(_lambert(normals.to(points.dtype), view))  # (B, N)
        grey = per_point.gather(1, index.clamp_min(0).flatten(1)).view_as(zbuf)
    colour = torch.as_tensor(background, dtype=points.dtype, device=points.device)
    image = torch.where(covered.unsqueeze(1), grey.unsqueeze(1), colour.view(1, 3, 1, 1))
    return image, index


def save_png(image: Tensor, path: str | os.PathLike) -> None:
    """Write a (3, H, W) image with values in [0, 1] as an 8-bit RGB PNG.

    Args:
        image: (3, H, W) floating-point image; values are clamped to [0, 1].
        path: destination file.
    """
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"`image` must have shape (3, H, W), got {tuple(image.shape)}.")
    pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    array = np.ascontiguousarray(pixels.permute(1, 2, 0).cpu().numpy())
    Image.fromarray(array).save(path)
