"""Camera convention shared by the renderer, the point-to-pixel mapping and augmentation.

Conventions (OpenGL style, right-handed):

- Camera space: the camera sits at the origin looking down -Z, with +X to the right and +Y up.
- ``view`` (..., 4, 4) maps world to camera coordinates; ``proj`` (..., 4, 4) is a perspective
  projection from camera to clip coordinates, so ``proj @ view @ [x, y, z, 1]`` gives clip
  coordinates and NDC are ``clip.xy / clip.w``.
- Image coordinates: ``u = (x_ndc + 1) / 2`` grows to the right and ``v = (1 - y_ndc) / 2``
  grows downward; the image is ``u, v in [0, 1)``. Pixel column ``floor(u * W)``, row
  ``floor(v * H)``; a feature-grid cell likewise ``floor(u * S)``, ``floor(v * S)``.
- Depth is ``-z_camera``: positive in front of the camera. Nothing is clipped at the near and
  far planes; points with depth <= 0 are behind the camera and never drawn or mapped.
- Rotating the points by ``R`` (``p' = R p``) and using ``compensate_rotation(view, R)``
  leaves every projection unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["look_at", "perspective", "project", "rotation_of", "compensate_rotation"]

_DEGENERATE_EPS = 1e-6  # |forward x up| below this: up is parallel to the viewing direction


def _as_vector(value: Tensor | Sequence[float], like: Tensor) -> Tensor:
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def look_at(
    eye: Tensor, target: Tensor | Sequence[float] = (0.0, 0.0, 0.0),
    up: Tensor | Sequence[float] = (0.0, 1.0, 0.0),
) -> Tensor:
    """World-to-camera matrix of a camera at ``eye`` looking at ``target``.

    Args:
        eye: (..., 3) camera positions (floating point).
        target: (..., 3) points the cameras look at; broadcast against ``eye``.
        up: (..., 3) world direction that appears upward in the image; must not be parallel
            to ``target - eye`` (see :mod:`plugin.render.view_sets` for a fallback).

    Returns:
        (..., 4, 4) rigid ``view`` matrices: rows of the rotation are the camera's right, up
        and backward axes in world coordinates, so the target lands on the camera's -Z axis.

    Raises:
        ValueError: if ``eye == target`` or ``up`` is parallel to the viewing direction.
    """
    target, up = _as_vector(target, eye), _as_vector(up, eye)
    eye, target, up = torch.broadcast_tensors(eye, target, up)
    forward = target - eye
    if bool((forward.norm(dim=-1) <= _DEGENERATE_EPS).any()):
        raise ValueError("look_at: `eye` equals `target`; place the camera away from its target.")
    forward = forward / forward.norm(dim=-1, keepdim=True)
    right = torch.linalg.cross(forward, up)
    right_norm = right.norm(dim=-1, keepdim=True)
    if bool((right_norm <= _DEGENERATE_EPS * up.norm(dim=-1, keepdim=True)).any()):
        raise ValueError("look_at: `up` is parallel to the viewing direction; pass another `up`.")
    right = right / right_norm
    true_up = torch.linalg.cross(right, forward)
    rotation = torch.stack([right, true_up, -forward], dim=-2)  # (..., 3, 3)
    translation = -(rotation @ eye.unsqueeze(-1))  # (..., 3, 1)
    return _homogeneous(rotation, translation)


def _homogeneous(rotation: Tensor, translation: Tensor | None = None) -> Tensor:
    """(..., 4, 4) matrix from a (..., 3, 3) linear part and an optional (..., 3, 1) offset."""
    out = torch.zeros(*rotation.shape[:-2], 4, 4, dtype=rotation.dtype, device=rotation.device)
    out[..., :3, :3] = rotation
    if translation is not None:
        out[..., :3, 3:] = translation
    out[..., 3, 3] = 1.0
    return out


def perspective(
    fov_deg: float | Tensor, near: float | Tensor, far: float | Tensor,
    aspect: float | Tensor = 1.0, *, dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """OpenGL perspective projection from camera to clip coordinates.

    Args:
        fov_deg: vertical field of view in degrees, in (0, 180); scalar or (...,) tensor.
        near: distance of the near plane, > 0; broadcast against ``fov_deg``.
        far: distance of the far plane, > ``near``.
        aspect: width / height of the image.
        dtype: dtype of the result.
        device: device of the result.

    Returns:
        (..., 4, 4) ``proj`` with ``clip.w = -z_camera`` (the depth), mapping the view frustum
        to NDC in [-1, 1]^3 (near plane to z_ndc = -1).
    """
    fov, near, far, aspect = (
        torch.as_tensor(v, dtype=dtype, device=device) for v in (fov_deg, near, far, aspect)
    )
    fov, near, far, aspect = torch.broadcast_tensors(fov, near, far, aspect)
    if bool(((fov <= 0) | (fov >= 180) | (near <= 0) | (far <= near)).any()):
        raise ValueError(
            "perspective: need 0 < fov_deg < 180 and 0 < near < far; check the camera settings."
        )
    focal = 1.0 / torch.tan(torch.deg2rad(fov) / 2)
    out = torch.zeros(*fov.shape, 4, 4, dtype=dtype, device=device)
    out[..., 0, 0] = focal / aspect
    out[..., 1, 1] = focal
    out[..., 2, 2] = (far + near) / (near - far)
    out[..., 2, 3] = 2 * far * near / (near - far)
    out[..., 3, 2] = -1.0
    return out


def _affine(matrix: Tensor, coords: Sequence[Tensor], row: int) -> Tensor:
    """Row ``row`` of ``matrix @ [*coords, 1]`` as explicit element-wise products and sums.

    Element-wise arithmetic in a fixed order gives every point the same rounding whatever the
    batch layout, device kernel or BLAS, unlike a matmul whose reduction order depends on the
    shapes. ``matrix`` is (..., 4, 4) and each coordinate (..., N).
    """
    m = matrix[..., row, :].unsqueeze(-2)  # (..., 1, 4)
    return ((m[..., 0] * coords[0] + m[..., 1] * coords[1]) + m[..., 2] * coords[2]) + m[..., 3]


def project(points: Tensor, view: Tensor, proj: Tensor) -> tuple[Tensor, Tensor]:
    """Image coordinates and depth of points seen by one camera per cloud.

    The one projection of the project: the renderers, the point-to-pixel mapping and the
    augmentation all call it, and it computes each point with the same element-wise arithmetic
    whatever the batch shape, so their pixels agree exactly by construction.

    Args:
        points: (..., N, 3) world coordinates.
        view: (..., 4, 4) world-to-camera matrices, broadcast against the leading dims of
            ``points`` (e.g. (B, 4, 4) for (B, N, 3) points, or (B, V, 4, 4) for (B, 1, N, 3)).
        proj: (..., 4, 4) camera-to-clip matrices, broadcast likewise.

    Returns:
        ``(uv, depth)``: (..., N, 2) image coordinates (u right, v down; inside the image when
        both are in [0, 1)) and (..., N) depth ``-z_camera`` (<= 0 behind the camera, where uv
        is meaningless).
    """
    world = points.unbind(-1)
    cam = [_affine(view, world, i) for i in range(3)]  # camera coordinates
    clip = [_affine(proj, cam, i) for i in (0, 1, 3)]  # clip x, y, w
    ndc_x, ndc_y = clip[0] / clip[2], clip[1] / clip[2]
    uv = torch.stack([(ndc_x + 1) / 2, (1 - ndc_y) / 2], dim=-1)
    return uv, -cam[2]


def rotation_of(view: Tensor) -> Tensor:
    """The 3x3 rotation of ``view`` (world-to-camera), e.g. for pose conditioning.

    Args:
        view: (..., 4, 4) world-to-camera matrices.

    Returns:
        (..., 3, 3) rotations; row i is camera axis i (right, up, backward) in world coordinates.
    """
    return view[..., :3, :3]


def compensate_rotation(view: Tensor, rotation: Tensor) -> Tensor:
    """View that sees rotated points ``R p`` exactly as ``view`` sees the original points ``p``.

    Args:
        view: (..., 4, 4) world-to-camera matrices.
        rotation: (..., 3, 3) rotations R applied to the points; broadcast against ``view``.

    Returns:
        (..., 4, 4) ``view @ [[R^T, 0], [0, 1]]`` (R^T is R's inverse).
    """
    return view @ _homogeneous(rotation.transpose(-1, -2).to(view.dtype))

