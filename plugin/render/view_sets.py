"""Fixed camera sets around an object centred at the origin (convention: :mod:`.cameras`).

World +Y is up. Every camera sits at ``distance`` from the origin and looks at it; cameras on
the Y axis (where +Y cannot be the image's up) use world -Z as their up direction instead.
The defaults suit objects normalised into the unit sphere: at distance 2.2 with a 60 degree
field of view the sphere's silhouette spans 88% of the image.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from .cameras import look_at, perspective

__all__ = [
    "DISTANCE_JITTER",
    "dodecahedron_views",
    "orthogonal_and_corner_views",
    "orthogonal_views",
    "sample_distance_scales",
    "scale_camera_distance",
    "views_from_directions",
]

DEFAULT_DISTANCE = 2.2
DEFAULT_FOV_DEG = 60.0
DEFAULT_NEAR = 0.1
DEFAULT_FAR = 10.0
DISTANCE_JITTER = (0.9, 1.1)  # CLIP2Point's random camera-distance scales during pre-training

_WORLD_UP = (0.0, 1.0, 0.0)
_FALLBACK_UP = (0.0, 0.0, -1.0)
_PARALLEL_COS = 0.999  # |cos(direction, up)| above this counts as parallel

# Camera directions (from the origin), in output order.
_ORTHOGONAL = [  # front, back, left, right, top, bottom
    (0.0, 0.0, 1.0), (0.0, 0.0, -1.0), (-1.0, 0.0, 0.0),
    (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, -1.0, 0.0),
]
_UPPER_CORNERS = [(1.0, 1.0, 1.0), (-1.0, 1.0, 1.0), (-1.0, 1.0, -1.0), (1.0, 1.0, -1.0)]


def _dodecahedron_vertices() -> list[tuple[float, float, float]]:
    """The 20 vertices of a regular dodecahedron: (±1, ±1, ±1) and cyclic (0, ±1/φ, ±φ)."""
    phi = (1 + math.sqrt(5)) / 2
    signs = [(sa, sb) for sa in (1.0, -1.0) for sb in (1.0, -1.0)]
    cube = [(x, y, z) for x in (1.0, -1.0) for y in (1.0, -1.0) for z in (1.0, -1.0)]
    cyclic = []
    for sa, sb in signs:
        a, b = sa / phi, sb * phi
        cyclic += [(0.0, a, b), (a, b, 0.0), (b, 0.0, a)]
    return cube + cyclic


def views_from_directions(
    directions: Tensor, distance: float = DEFAULT_DISTANCE, fov_deg: float = DEFAULT_FOV_DEG,
    near: float = DEFAULT_NEAR, far: float = DEFAULT_FAR,
) -> tuple[Tensor, Tensor]:
    """Cameras at ``distance`` along each direction, looking at the origin.

    Args:
        directions: (V, 3) non-zero directions from the origin to the cameras.
        distance: camera distance from the origin, > 0.
        fov_deg: vertical (and horizontal: square images) field of view in degrees.
        near: near-plane distance, > 0.
        far: far-plane distance, > ``near``.

    Returns:
        ``(view, proj)``, each (V, 4, 4) float32.
    """
    if not distance > 0:
        raise ValueError(f"`distance` must be positive, got {distance}; pass a value > 0.")
    unit = directions / directions.norm(dim=-1, keepdim=True)
    world_up = torch.tensor(_WORLD_UP, dtype=unit.dtype).expand_as(unit)
    parallel = (unit @ world_up[0]).abs() > _PARALLEL_COS
    up = torch.where(parallel.unsqueeze(-1), torch.tensor(_FALLBACK_UP, dtype=unit.dtype), world_up)
    view = look_at(unit * distance, torch.zeros(3, dtype=unit.dtype), up)
    proj = perspective(fov_deg, near, far, dtype=view.dtype).expand(len(unit), 4, 4)
    return view, proj.contiguous()


def _float32_views(directions: Sequence[Sequence[float]], distance: float, fov_deg: float, near: float,
                   far: float) -> tuple[Tensor, Tensor]:
    """float32 cameras for ``directions``, computed in float64 so their rotations are exact to float32."""
    view, proj = views_from_directions(torch.tensor(directions, dtype=torch.float64), distance, fov_deg, near, far)
    return view.float(), proj.float()


def dodecahedron_views(
    distance: float = DEFAULT_DISTANCE, fov_deg: float = DEFAULT_FOV_DEG,
    near: float = DEFAULT_NEAR, far: float = DEFAULT_FAR,
) -> tuple[Tensor, Tensor]:
    """Pic@Point's 20 pre-training cameras, at the vertices of a regular dodecahedron.

    Args:
        distance: camera distance from the origin (the dodecahedron's circumradius).
        fov_deg: field of view in degrees.
        near: near-plane distance.
        far: far-plane distance.

    Returns:
        ``(view, proj)``, each (20, 4, 4) float32; neighbouring cameras are 41.8 degrees apart.
    """
    return _float32_views(_dodecahedron_vertices(), distance, fov_deg, near, far)


def orthogonal_views(
    distance: float = DEFAULT_DISTANCE, fov_deg: float = DEFAULT_FOV_DEG,
    near: float = DEFAULT_NEAR, far: float = DEFAULT_FAR,
) -> tuple[Tensor, Tensor]:
    """Six axis-aligned cameras: front (+Z), back, left (-X), right, top (+Y), bottom.

    Args:
        distance: camera distance from the origin.
        fov_deg: field of view in degrees.
        near: near-plane distance.
        far: far-plane distance.

    Returns:
        ``(view, proj)``, each (6, 4, 4) float32, in the order listed above.
    """
    return _float32_views(_ORTHOGONAL, distance, fov_deg, near, far)


def orthogonal_and_corner_views(
    distance: float = DEFAULT_DISTANCE, fov_deg: float = DEFAULT_FOV_DEG,
    near: float = DEFAULT_NEAR, far: float = DEFAULT_FAR,
) -> tuple[Tensor, Tensor]:
    """The six orthogonal cameras plus four upper-corner ones (CLIP2Point's ten views).

    The corner cameras look down from directions (±1, 1, ±1), i.e. 35.3 degrees above the
    horizon at azimuths 45, 135, 225 and 315 degrees.

    Args:
        distance: camera distance from the origin.
        fov_deg: field of view in degrees.
        near: near-plane distance.
        far: far-plane distance.

    Returns:
        ``(view, proj)``, each (10, 4, 4) float32: :func:`orthogonal_views` first.
    """
    return _float32_views(_ORTHOGONAL + _UPPER_CORNERS, distance, fov_deg, near, far)


def scale_camera_distance(view: Tensor, scale: float | Tensor) -> Tensor:
    """Move cameras along the ray from the world origin through them, scaling their distance.

    A camera at position ``c`` has ``view = [[R, t], [0, 1]]`` with ``t = -R c``, so scaling
    ``t`` by ``s`` puts the camera at ``s c``: same direction from the origin and rotation,
    distance ``s |c|``. For the cameras of this module (looking at the origin) it keeps them
    looking at the origin.

    Args:
        view: (..., 4, 4) world-to-camera matrices.
        scale: positive factor; a float or a tensor broadcast against ``view.shape[:-2]``
            (e.g. (B, 1) against (B, V, 4, 4) views for one scale per cloud).

    Returns:
        (..., 4, 4) views (broadcast shape) with the translation column scaled.
    """
    scale = torch.as_tensor(scale, dtype=view.dtype, device=view.device)
    if not bool((scale > 0).all()):
        raise ValueError("`scale` must be positive; pass camera-distance factors > 0.")
    batch = torch.broadcast_shapes(view.shape[:-2], scale.shape)
    out = view.expand(*batch, 4, 4).clone()
    out[..., :3, 3] = out[..., :3, 3] * scale.unsqueeze(-1)
    return out


def sample_distance_scales(
    batch: int, generator: torch.Generator | None = None, low: float = DISTANCE_JITTER[0],
    high: float = DISTANCE_JITTER[1], device: torch.device | str | None = None,
) -> Tensor:
    """Random camera-distance factors, one per cloud, uniform in ``[low, high)``.

    Args:
        batch: number of factors B, >= 0.
        generator: random generator (on ``device``); None uses torch's global one.
        low: smallest factor, > 0.
        high: bound of the factors, > ``low`` (never returned).
        device: device of the result.

    Returns:
        (B,) float32 factors for :func:`scale_camera_distance`.
    """
    if not 0 < low < high:
        raise ValueError(f"need 0 < low < high, got low={low} and high={high}; fix the range.")
    u = torch.rand(batch, generator=generator, dtype=torch.float64, device=device)
    scales = (low + (high - low) * u).float()
    # float32 rounding may reach `high`; clamp to the largest float32 below it (half-open).
    top = torch.tensor(high, dtype=torch.float32)
    if top.item() >= high:
        top = torch.nextafter(top, torch.tensor(low, dtype=torch.float32))
    return scales.clamp_max(top.item())
