"""Procedural shape dataset: parametric objects sampled uniformly over their surface, with outward normals.

Every class is a union of analytic surface parts (box faces, discs, frustum walls, spheres, torus
arcs) in a Y-up frame; parts that touch another part leave out the touching face, so few points fall
inside the object. Points are distributed over parts by area and uniformly within each part, so a
shape's points are a uniform sample of its surface. Each instance draws its own proportions, a
random rotation about +Y (plus an optional small tilt) and its own sampling from a seed.

:func:`write_dataset` writes the ``modelnet40_normal_resampled`` layout that
:class:`~plugin.datasets.ModelNet40NormalResampled` reads with its default ``num_classes: 40`` (the
shape-names file lists these classes, so labels run over them)::

    <out>/modelnet40_shape_names.txt, modelnet40_train.txt, modelnet40_test.txt
    <out>/<class>/<class>_NNNN.txt      x,y,z,nx,ny,nz per line, points in random order
    <out>/procedural_shapes.json        the generation settings; "complete" once every file is written
"""
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from ..errors import ConfigError
from ..io import save_text

Vec = Tuple[float, float, float]
Surface = Tuple[np.ndarray, np.ndarray]  # points (n,3), unit normals (n,3)
MANIFEST = "procedural_shapes.json"
VERSION = 1  # bump when the shapes change, so old folders are not taken as complete


# ---- analytic surface parts (local frame: Y up) --------------------------------------------------------

class Part(Protocol):
    """A surface patch: its area and uniform samples of it with outward unit normals."""

    @property
    def area(self) -> float: ...

    def sample(self, n: int, rng: np.random.Generator) -> Surface: ...


@dataclass(frozen=True)
class Box:
    """Surface of an axis-aligned box.

    Args:
        half: half extents along x, y, z.
        centre: box centre.
        skip: faces left out, named ``+x``, ``-x``, ``+y``, ... (where the box touches another part).
    """

    half: Vec
    centre: Vec = (0.0, 0.0, 0.0)
    skip: Tuple[str, ...] = ()

    def faces(self) -> List[Tuple[int, float, float]]:
        """``(axis, sign, area)`` of the faces kept."""
        h = self.half
        out = []
        for axis in range(3):
            a, b = [h[i] for i in range(3) if i != axis]
            for sign in (1.0, -1.0):
                if f"{'+' if sign > 0 else '-'}{'xyz'[axis]}" not in self.skip:
                    out.append((axis, sign, 4.0 * a * b))
        return out

    @property
    def area(self) -> float:
        return sum(area for _, _, area in self.faces())

    def sample(self, n: int, rng: np.random.Generator) -> Surface:
        faces = self.faces()
        areas = np.array([area for _, _, area in faces])
        pick = rng.choice(len(faces), size=n, p=areas / areas.sum())
        half = np.array(self.half)
        points = rng.uniform(-1.0, 1.0, (n, 3)) * half
        normals = np.zeros((n, 3))
        for k, (axis, sign, _) in enumerate(faces):
            rows = pick == k
            points[rows, axis] = sign * half[axis]
            normals[rows, axis] = sign
        return points + np.array(self.centre), normals


@dataclass(frozen=True)
class Frustum:
    """Side wall of a truncated cone about the vertical axis (a cylinder when the radii are equal).

    Args:
        r_bottom: radius at the bottom.
        r_top: radius at the top (0 for a cone).
        height: wall height.
        base: centre of the bottom circle.
        inward: normals point towards the axis (the inner wall of a hollow object).
    """

    r_bottom: float
    r_top: float
    height: float
    base: Vec = (0.0, 0.0, 0.0)
    inward: bool = False

    @property
    def area(self) -> float:
        return math.pi * (self.r_bottom + self.r_top) * math.hypot(self.height, self.r_bottom - self.r_top)

    def sample(self, n: int, rng: np.random.Generator) -> Surface:
        r0, r1, h = self.r_bottom, self.r_top, self.height
        u, theta = rng.uniform(size=n), rng.uniform(0.0, 2 * math.pi, n)
        # The circumference grows linearly along the wall: invert the CDF of density ~ r(t).
        t = u if math.isclose(r0, r1) else (np.sqrt(r0 ** 2 + u * (r1 ** 2 - r0 ** 2)) - r0) / (r1 - r0)
        r = r0 + (r1 - r0) * t
        points = np.stack([r * np.cos(theta), h * t, r * np.sin(theta)], axis=1)
        normals = np.stack([h * np.cos(theta), np.full(n, r0 - r1), h * np.sin(theta)], axis=1)
        normals /= math.hypot(h, r0 - r1)
        return points + np.array(self.base), -normals if self.inward else normals


@dataclass(frozen=True)
class Disc:
    """Horizontal disc or annulus facing up or down.

    Args:
        r_out: outer radius.
        centre: disc centre.
        up: the normal is +Y (else -Y).
        r_in: inner radius (0 for a full disc).
    """

    r_out: float
    centre: Vec = (0.0, 0.0, 0.0)
    up: bool = True
    r_in: float = 0.0

    @property
    def area(self) -> float:
        return math.pi * (self.r_out ** 2 - self.r_in ** 2)

    def sample(self, n: int, rng: np.random.Generator) -> Surface:
        r = np.sqrt(rng.uniform(self.r_in ** 2, self.r_out ** 2, n))
        theta = rng.uniform(0.0, 2 * math.pi, n)
        points = np.stack([r * np.cos(theta), np.zeros(n), r * np.sin(theta)], axis=1)
        normals = np.tile([0.0, 1.0 if self.up else -1.0, 0.0], (n, 1))
        return points + np.array(self.centre), normals


@dataclass(frozen=True)
class Sphere:
    """Sphere surface.

    Args:
        radius: sphere radius.
        centre: sphere centre.
    """

    radius: float
    centre: Vec = (0.0, 0.0, 0.0)

    @property
    def area(self) -> float:
        return 4 * math.pi * self.radius ** 2

    def sample(self, n: int, rng: np.random.Generator) -> Surface:
        normals = rng.normal(size=(n, 3))
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        return self.radius * normals + np.array(self.centre), normals


@dataclass(frozen=True)
class Torus:
    """Torus about the vertical axis, or an arc of it, optionally turned 90 degrees about X (axis along Z).

    Args:
        major: distance from the axis to the tube centre.
        minor: tube radius.
        centre: torus centre.
        arc: range of the angle about the axis, from +X towards +Z, in radians.
        upright: turn about X so the ring stands in the XY plane (a mug handle).
    """

    major: float
    minor: float
    centre: Vec = (0.0, 0.0, 0.0)
    arc: Tuple[float, float] = (0.0, 2 * math.pi)
    upright: bool = False

    @property
    def area(self) -> float:
        return (self.arc[1] - self.arc[0]) * self.major * 2 * math.pi * self.minor

    def sample(self, n: int, rng: np.random.Generator) -> Surface:
        big, small = self.major, self.minor
        # Area element ~ (R + r cos phi): rejection-sample the tube angle phi.
        phi = np.empty(0)
        while len(phi) < n:
            cand = rng.uniform(0.0, 2 * math.pi, 2 * n)
            keep = rng.uniform(0.0, big + small, 2 * n) < big + small * np.cos(cand)
            phi = np.concatenate([phi, cand[keep]])
        phi = phi[:n]
        theta = rng.uniform(*self.arc, n)
        normals = np.stack([np.cos(phi) * np.cos(theta), np.sin(phi), np.cos(phi) * np.sin(theta)], axis=1)
        ring = np.stack([big * np.cos(theta), np.zeros(n), big * np.sin(theta)], axis=1)
        points = ring + small * normals
        if self.upright:  # (x, y, z) -> (x, -z, y): rotation by +90 degrees about X
            points, normals = (np.stack([a[:, 0], -a[:, 2], a[:, 1]], axis=1) for a in (points, normals))
        return points + np.array(self.centre), normals


def sample_parts(parts: Sequence[Part], n: int, rng: np.random.Generator) -> Surface:
    """``n`` points uniform over the union of ``parts`` (area-weighted), in random order.

    Args:
        parts: surface parts.
        n: number of points.
        rng: random generator.
    """
    areas = np.array([part.area for part in parts])
    counts = rng.multinomial(n, areas / areas.sum())
    samples = [part.sample(int(c), rng) for part, c in zip(parts, counts) if c]
    points, normals = (np.concatenate(s) for s in zip(*samples))
    order = rng.permutation(n)
    return points[order], normals[order]


# ---- shape classes: each draws its proportions and returns its parts ---------------------------------

def _cylinder(radius: float, height: float, base: Vec, top: bool = True, bottom: bool = True) -> List[Part]:
    """Closed (or partly open) vertical cylinder standing on ``base``."""
    x, y, z = base
    parts: List[Part] = [Frustum(radius, radius, height, base)]
    parts += [Disc(radius, (x, y + height, z), up=True)] if top else []
    parts += [Disc(radius, base, up=False)] if bottom else []
    return parts


def _vessel(heights: Sequence[float], radii: Sequence[float], wall: float, floor: float) -> List[Part]:
    """Open thick-walled vessel of revolution standing on y=0.

    Args:
        heights: increasing heights of the outer profile, from 0 to the rim.
        radii: outer radius at each height.
        wall: wall thickness (the inner radius is the outer one minus ``wall``).
        floor: floor thickness; the inner wall runs from ``floor`` to the rim.
    """
    inner_y = [floor] + [y for y in heights if y > floor]
    inner_r = [float(np.interp(y, heights, radii)) - wall for y in inner_y]

    def walls(ys: Sequence[float], rs: Sequence[float], inward: bool) -> List[Part]:
        return [Frustum(r0, r1, y1 - y0, (0.0, y0, 0.0), inward) for y0, y1, r0, r1 in zip(ys, ys[1:], rs, rs[1:])]

    return (walls(heights, radii, False) + walls(inner_y, inner_r, True)
            + [Disc(radii[0], up=False), Disc(radii[-1], (0.0, heights[-1], 0.0), r_in=inner_r[-1]),
               Disc(inner_r[0], (0.0, floor, 0.0))])


def _corners(half_x: float, half_z: float) -> List[Tuple[float, float]]:
    return [(sx * half_x, sz * half_z) for sx in (1.0, -1.0) for sz in (1.0, -1.0)]


def _legs(half_x: float, half_z: float, height: float, a: float) -> List[Part]:
    """Four square legs of half width ``a`` from the floor to ``height``, at the corners of a rectangle."""
    return [Box((a, height / 2, a), (x, height / 2, z), skip=("+y",)) for x, z in _corners(half_x, half_z)]


def box(rng: np.random.Generator) -> List[Part]:
    """Cuboid of random proportions."""
    return [Box(tuple(rng.uniform(0.2, 1.0, 3)))]


def cylinder(rng: np.random.Generator) -> List[Part]:
    """Closed cylinder, from a flat disc to a tall rod."""
    height = rng.uniform(0.3, 2.5)
    return _cylinder(rng.uniform(0.3, 1.0), height, (0.0, -height / 2, 0.0))


def cone(rng: np.random.Generator) -> List[Part]:
    """Cone with its base disc."""
    radius, height = rng.uniform(0.4, 1.0), rng.uniform(0.6, 2.0)
    return [Frustum(radius, 0.0, height), Disc(radius, up=False)]


def sphere(rng: np.random.Generator) -> List[Part]:
    """Sphere (instances differ in pose and sampling only)."""
    return [Sphere(1.0)]


def torus(rng: np.random.Generator) -> List[Part]:
    """Ring torus from thin to fat."""
    return [Torus(1.0, rng.uniform(0.15, 0.6))]


def table(rng: np.random.Generator) -> List[Part]:
    """Rectangular or round top on four legs or on a central pedestal."""
    w, d, t = rng.uniform(0.6, 1.2), rng.uniform(0.4, 0.9), rng.uniform(0.02, 0.07)
    h, a = rng.uniform(0.5, 1.0), rng.uniform(0.03, 0.07)
    round_top = rng.uniform() < 0.35
    top = _cylinder(d, 2 * t, (0.0, h, 0.0)) if round_top else [Box((w, t, d), (0.0, h + t, 0.0))]
    if rng.uniform() < 0.3:  # pedestal: a foot disc and a column
        foot_r, col_r = rng.uniform(0.25, 0.5) * d, rng.uniform(0.04, 0.1)
        return top + _cylinder(foot_r, 0.04, (0.0, 0.0, 0.0)) + [Frustum(col_r, col_r, h - 0.04, (0.0, 0.04, 0.0))]
    inset = rng.uniform(0.0, 0.15)
    half_x, half_z = (d * 0.7, d * 0.7) if round_top else (w - a - inset, d - a - inset)
    return top + _legs(half_x, half_z, h, a)


def chair(rng: np.random.Generator) -> List[Part]:
    """Square seat on four legs with a back rest and sometimes arm rests."""
    w, d, t = rng.uniform(0.35, 0.55), rng.uniform(0.35, 0.55), rng.uniform(0.03, 0.06)
    h, a = rng.uniform(0.4, 0.65), rng.uniform(0.025, 0.05)
    back_h, back_t = rng.uniform(0.4, 0.9), rng.uniform(0.025, 0.06)
    seat_top = h + 2 * t
    parts: List[Part] = [Box((w, t, d), (0.0, h + t, 0.0)),
                         Box((w, back_h / 2, back_t), (0.0, seat_top + back_h / 2, -d + back_t), skip=("-y",))]
    if rng.uniform() < 0.5:
        arm_y = rng.uniform(0.15, 0.3)
        for x in (w - a, -(w - a)):  # a post at the front and a rail back to the back rest
            parts += [Box((a, arm_y / 2, a), (x, seat_top + arm_y / 2, d - a), skip=("-y", "+y")),
                      Box((a, a, d - back_t), (x, seat_top + arm_y + a, back_t), skip=("-z",))]
    return parts + _legs(w - a, d - a, h, a)


def stool(rng: np.random.Generator) -> List[Part]:
    """Round seat on three or four thin round legs."""
    r, t, h = rng.uniform(0.25, 0.45), rng.uniform(0.04, 0.1), rng.uniform(0.5, 1.0)
    leg_r, n_legs = rng.uniform(0.02, 0.045), int(rng.integers(3, 5))
    angles = rng.uniform(0, 2 * math.pi) + 2 * math.pi * np.arange(n_legs) / n_legs
    spread = r - leg_r - rng.uniform(0.0, 0.1)
    legs = [part for angle in angles
            for part in _cylinder(leg_r, h, (spread * math.cos(angle), 0.0, spread * math.sin(angle)), top=False)]
    return _cylinder(r, t, (0.0, h, 0.0)) + legs


def bench(rng: np.random.Generator) -> List[Part]:
    """Long narrow low seat on four legs or on two end panels."""
    w, d, t = rng.uniform(0.8, 1.3), rng.uniform(0.15, 0.3), rng.uniform(0.03, 0.06)
    h, a = rng.uniform(0.3, 0.5), rng.uniform(0.03, 0.05)
    top = Box((w, t, d), (0.0, h + t, 0.0))
    if rng.uniform() < 0.5:
        x = w - rng.uniform(0.05, 0.2)
        return [top] + [Box((a, h / 2, d * 0.9), (sx * x, h / 2, 0.0), skip=("+y",)) for sx in (1.0, -1.0)]
    return [top] + _legs(w - a - 0.05, d - a, h, a)


def desk(rng: np.random.Generator) -> List[Part]:
    """Top on a drawer pedestal at one end (or both) and legs at the other."""
    w, d, t = rng.uniform(0.7, 1.1), rng.uniform(0.35, 0.6), rng.uniform(0.02, 0.05)
    h, a, pw = rng.uniform(0.6, 0.8), rng.uniform(0.025, 0.05), rng.uniform(0.15, 0.3)
    parts: List[Part] = [Box((w, t, d), (0.0, h + t, 0.0)),
                         Box((pw, h / 2, d * 0.95), (w - pw, h / 2, 0.0), skip=("+y",))]
    if rng.uniform() < 0.4:
        return parts + [Box((pw, h / 2, d * 0.95), (-(w - pw), h / 2, 0.0), skip=("+y",))]
    return parts + [Box((a, h / 2, a), (-(w - a), h / 2, z), skip=("+y",)) for z in (d - a, -(d - a))]


def bookshelf(rng: np.random.Generator) -> List[Part]:
    """Open-front case: sides, top, bottom, back panel and one to four shelves."""
    w, height, d, t = rng.uniform(0.3, 0.8), rng.uniform(0.8, 2.0), rng.uniform(0.12, 0.3), rng.uniform(0.015, 0.035)
    inner_w = w - 2 * t
    parts: List[Part] = [Box((t, height / 2, d), (sx * (w - t), height / 2, 0.0)) for sx in (1.0, -1.0)]
    parts += [Box((inner_w, t, d), (0.0, y, 0.0), skip=("+x", "-x")) for y in (t, height - t)]
    parts.append(Box((inner_w, height / 2 - 2 * t, t), (0.0, height / 2, -d + t), skip=("+x", "-x", "+y", "-y")))
    n = int(rng.integers(1, 5))
    ys = np.linspace(0.0, height, n + 2)[1:-1]
    return parts + [Box((inner_w, t, d - t), (0.0, y, t), skip=("+x", "-x", "-z")) for y in ys]


def sofa(rng: np.random.Generator) -> List[Part]:
    """Seat block with a back block and two arm blocks."""
    w, d, seat = rng.uniform(0.7, 1.2), rng.uniform(0.35, 0.5), rng.uniform(0.3, 0.45)
    back_h, back_t = rng.uniform(0.25, 0.5), rng.uniform(0.08, 0.15)
    arm_w, arm_h = rng.uniform(0.06, 0.15), rng.uniform(0.1, 0.25)
    inner = w - 2 * arm_w
    return [Box((inner, seat / 2, d - back_t), (0.0, seat / 2, back_t), skip=("+x", "-x", "-z")),
            Box((inner, (seat + back_h) / 2, back_t), (0.0, (seat + back_h) / 2, -d + back_t), skip=("+x", "-x")),
            *[Box((arm_w, (seat + arm_h) / 2, d), (sx * (w - arm_w), (seat + arm_h) / 2, 0.0)) for sx in (1.0, -1.0)]]


def lamp(rng: np.random.Generator) -> List[Part]:
    """Round base, thin pole and a closed truncated-cone shade."""
    base_r, base_t = rng.uniform(0.2, 0.4), rng.uniform(0.03, 0.08)
    pole_r, pole_h = rng.uniform(0.015, 0.035), rng.uniform(0.7, 1.4)
    shade_bottom, shade_h = rng.uniform(0.25, 0.5), rng.uniform(0.2, 0.45)
    shade_top = shade_bottom * rng.uniform(0.3, 0.8)
    shade_y = base_t + pole_h
    return (_cylinder(base_r, base_t, (0.0, 0.0, 0.0)) + [Frustum(pole_r, pole_r, pole_h, (0.0, base_t, 0.0))]
            + [Frustum(shade_bottom, shade_top, shade_h, (0.0, shade_y, 0.0)),
               Disc(shade_bottom, (0.0, shade_y, 0.0), up=False),
               Disc(shade_top, (0.0, shade_y + shade_h, 0.0), up=True)])


def bottle(rng: np.random.Generator) -> List[Part]:
    """Cylindrical body, conical shoulder and a narrow neck with its cap."""
    body_r, body_h = rng.uniform(0.22, 0.45), rng.uniform(0.7, 1.4)
    shoulder_h, neck_r, neck_h = rng.uniform(0.1, 0.35), rng.uniform(0.06, 0.13), rng.uniform(0.15, 0.45)
    neck_y = body_h + shoulder_h
    return (_cylinder(body_r, body_h, (0.0, 0.0, 0.0), top=False)
            + [Frustum(body_r, neck_r, shoulder_h, (0.0, body_h, 0.0))]
            + _cylinder(neck_r, neck_h, (0.0, neck_y, 0.0), bottom=False))


def vase(rng: np.random.Generator) -> List[Part]:
    """Open vessel with a foot, a wide belly, a narrow neck and a flared lip."""
    foot, belly, neck, lip = rng.uniform(0.15, 0.3), rng.uniform(0.3, 0.5), rng.uniform(0.1, 0.2), rng.uniform(0.15, 0.3)
    h_belly, h_neck, height = rng.uniform(0.3, 0.6), rng.uniform(0.8, 1.2), rng.uniform(1.3, 1.8)
    return _vessel([0.0, h_belly, h_neck, height], [foot, belly, neck, lip], wall=0.03, floor=0.06)


def cup(rng: np.random.Generator) -> List[Part]:
    """Open tapered vessel, wider at the rim, without a handle."""
    r_top, height = rng.uniform(0.3, 0.5), rng.uniform(0.5, 1.0)
    return _vessel([0.0, height], [r_top * rng.uniform(0.55, 0.85), r_top], rng.uniform(0.02, 0.05), 0.05)


def bowl(rng: np.random.Generator) -> List[Part]:
    """Wide shallow open vessel with a rounded (two-segment) profile."""
    r_top, height = rng.uniform(0.7, 1.0), rng.uniform(0.25, 0.5)
    r_bottom = r_top * rng.uniform(0.3, 0.5)
    return _vessel([0.0, 0.4 * height, height], [r_bottom, r_bottom + 0.7 * (r_top - r_bottom), r_top],
                   rng.uniform(0.02, 0.04), 0.04)


def mug(rng: np.random.Generator) -> List[Part]:
    """Open thick-walled cylinder (outer and inner walls, rim, floor) with a handle arc."""
    r, h = rng.uniform(0.3, 0.5), rng.uniform(0.6, 1.1)
    handle_r = rng.uniform(0.15, min(0.3, 0.45 * h))
    handle = Torus(handle_r, rng.uniform(0.025, 0.05), (r, h / 2, 0.0), (-math.pi / 2, math.pi / 2), upright=True)
    return _vessel([0.0, h], [r, r], rng.uniform(0.03, 0.07), rng.uniform(0.04, 0.08)) + [handle]


def bed(rng: np.random.Generator) -> List[Part]:
    """Long low mattress on short legs, a headboard and sometimes a footboard."""
    w, l, m = rng.uniform(0.45, 0.7), rng.uniform(0.9, 1.2), rng.uniform(0.08, 0.18)
    leg_h, a, board_t = rng.uniform(0.08, 0.25), rng.uniform(0.03, 0.06), rng.uniform(0.02, 0.05)
    head_h = leg_h + 2 * m + rng.uniform(0.25, 0.6)
    parts: List[Part] = [Box((w, m, l), (0.0, leg_h + m, 0.0)),
                         Box((w, head_h / 2, board_t), (0.0, head_h / 2, -l - board_t))]
    if rng.uniform() < 0.5:
        foot_h = leg_h + 2 * m + rng.uniform(0.05, 0.2)
        parts.append(Box((w, foot_h / 2, board_t), (0.0, foot_h / 2, l + board_t)))
    return parts + _legs(w - a, l - a, leg_h, a)


SHAPES: Dict[str, Callable[[np.random.Generator], List[Part]]] = {fn.__name__: fn for fn in (
    box, cylinder, cone, sphere, torus, table, chair, stool, bench, desk, bookshelf, sofa, lamp, bottle, vase, cup,
    bowl, mug, bed)}
CLASSES: List[str] = list(SHAPES)


# ---- posing and sampling -----------------------------------------------------------------------------

def random_pose(rng: np.random.Generator, max_tilt_deg: float = 0.0) -> np.ndarray:
    """3x3 rotation: about +Y by a uniform angle, then tilted by up to ``max_tilt_deg`` about a horizontal axis."""
    yaw = rng.uniform(0.0, 2 * math.pi)
    c, s = math.cos(yaw), math.sin(yaw)
    rotation = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    tilt = math.radians(rng.uniform(0.0, max_tilt_deg)) if max_tilt_deg > 0 else 0.0
    if tilt:
        azimuth = rng.uniform(0.0, 2 * math.pi)
        axis = np.array([math.cos(azimuth), 0.0, math.sin(azimuth)])
        k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
        rotation = (np.eye(3) + math.sin(tilt) * k + (1 - math.cos(tilt)) * k @ k) @ rotation  # Rodrigues
    return rotation


def sample_shape(name: str, num_points: int, rng: np.random.Generator, max_tilt_deg: float = 0.0) -> np.ndarray:
    """One random instance of class ``name``: (num_points, 6) float32 ``x,y,z,nx,ny,nz``.

    The cloud is centred at its mean and scaled into the unit sphere (as ModelNet's files), then posed
    by :func:`random_pose`; points are in random order, so every prefix is a uniform sample too.

    Args:
        name: a class of :data:`CLASSES`.
        num_points: points to sample.
        rng: random generator (proportions, pose, sampling).
        max_tilt_deg: largest tilt away from +Y up, in degrees.
    """
    if name not in SHAPES:
        raise ConfigError(f"Unknown procedural shape class '{name}': use one of {', '.join(CLASSES)}.")
    points, normals = sample_parts(SHAPES[name](rng), num_points, rng)
    points = points - points.mean(axis=0)
    points /= np.linalg.norm(points, axis=1).max()
    rotation = random_pose(rng, max_tilt_deg)
    return np.concatenate([points @ rotation.T, normals @ rotation.T], axis=1).astype(np.float32)


def instance_rng(seed: int, class_index: int, instance: int) -> np.random.Generator:
    """The generator of one instance, independent of how many others are made or in which order."""
    return np.random.default_rng([seed, class_index, instance])


# ---- the modelnet40_normal_resampled layout -------------------------------------------------------------

def shape_ids(per_class_train: int, per_class_test: int) -> Dict[str, List[str]]:
    """Split lists: per class, instances 1..train are train and the next ``per_class_test`` are test."""
    ids: Dict[str, List[str]] = {"train": [], "test": []}
    for name in CLASSES:
        ids["train"] += [f"{name}_{i:04d}" for i in range(1, per_class_train + 1)]
        ids["test"] += [f"{name}_{i:04d}" for i in range(per_class_train + 1, per_class_train + per_class_test + 1)]
    return ids


def read_manifest(out: Path) -> Optional[dict]:
    """The settings of the dataset in ``out``, or None when there is none."""
    path = out / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def write_dataset(out: str, per_class_train: int, per_class_test: int, num_points: int = 2048, seed: int = 0,
                  max_tilt_deg: float = 0.0, progress: Callable[[Iterable], Iterable] = iter,
                  out_key: str = "--out") -> int:
    """Write the procedural dataset in the ``modelnet40_normal_resampled`` layout; resumable and idempotent.

    A folder whose manifest records the same settings and ``complete`` is left as is; an unfinished one
    is completed (files already written are kept, as they are deterministic). Every file is written
    atomically, so a killed run leaves no partial file.

    Args:
        out: output folder.
        per_class_train: training shapes per class.
        per_class_test: test shapes per class.
        num_points: points per shape file.
        seed: seeds every instance (with its class and number).
        max_tilt_deg: largest tilt away from +Y up, in degrees.
        progress: wraps the list of shapes to write, e.g. ``tqdm``.
        out_key: the option or config key that chose ``out``, named when a file cannot be written.

    Returns:
        The number of shape files written (0 when the folder was complete).

    Raises:
        ConfigError: ``out`` holds a dataset made with other settings, or a count is not positive.
        OutputNotWritableError: a file cannot be written.
    """
    if min(per_class_train, per_class_test, num_points) < 1:
        raise ConfigError("The per-class train and test counts and the points per shape must be at least 1.")
    root = Path(out)
    settings = {"version": VERSION, "classes": CLASSES, "per_class_train": per_class_train,
                "per_class_test": per_class_test, "num_points": num_points, "seed": seed,
                "max_tilt_deg": max_tilt_deg}
    found = read_manifest(root)
    if found is not None:
        if {k: v for k, v in found.items() if k != "complete"} != settings:
            raise ConfigError(f"'{root}' holds a procedural dataset made with other settings ({root / MANIFEST}): "
                              f"choose another output folder or delete that one.")
        if found.get("complete"):
            return 0
    root.mkdir(parents=True, exist_ok=True)
    save_text(json.dumps(dict(settings, complete=False), indent=2), str(root / MANIFEST), out_key)
    ids = shape_ids(per_class_train, per_class_test)
    todo = [shape_id for shape_id in ids["train"] + ids["test"]
            if not (root / shape_id.rsplit("_", 1)[0] / f"{shape_id}.txt").is_file()]
    for shape_id in progress(todo):
        name, number = shape_id.rsplit("_", 1)
        cloud = sample_shape(name, num_points, instance_rng(seed, CLASSES.index(name), int(number)), max_tilt_deg)
        (root / name).mkdir(exist_ok=True)
        text = "\n".join(",".join(f"{v:.6f}" for v in row) for row in cloud) + "\n"
        save_text(text, str(root / name / f"{shape_id}.txt"), out_key)
    save_text("\n".join(CLASSES) + "\n", str(root / "modelnet40_shape_names.txt"), out_key)
    for split, split_ids in ids.items():
        save_text("\n".join(split_ids) + "\n", str(root / f"modelnet40_{split}.txt"), out_key)
    save_text(json.dumps(dict(settings, complete=True), indent=2), str(root / MANIFEST), out_key)
    return len(todo)
