"""Procedural shapes: analytic surfaces, outward unit normals, area-uniform sampling, determinism, layout."""
import math
from pathlib import Path

import numpy as np
import pytest

from plugin.datasets import ModelNet40NormalResampled
from plugin.datasets import procedural_shapes as ps
from plugin.errors import ConfigError

from ..conftest import load_tool

CONVEX = ("box", "cylinder", "cone", "sphere")


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_at_least_ten_named_classes():
    assert len(ps.CLASSES) >= 10 and len(set(ps.CLASSES)) == len(ps.CLASSES)
    assert all(name.isidentifier() and "_" not in name for name in ps.CLASSES)  # <class>_NNNN splits cleanly


@pytest.mark.parametrize("name", ps.CLASSES)
def test_every_class_gives_unit_normals_in_the_unit_sphere(name):
    cloud = ps.sample_shape(name, 512, rng(), max_tilt_deg=10.0)
    assert cloud.shape == (512, 6) and cloud.dtype == np.float32 and np.isfinite(cloud).all()
    np.testing.assert_allclose(np.linalg.norm(cloud[:, 3:], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(cloud[:, :3], axis=1).max(), 1.0, atol=1e-5)
    np.testing.assert_allclose(cloud[:, :3].mean(axis=0), 0.0, atol=1e-5)


@pytest.mark.parametrize("name", ps.CLASSES)
def test_normals_point_outward_by_the_divergence_theorem(name):
    """With outward normals the mean of n . (p - c) over a closed surface is 3 V / A > 0 (inward: < 0).

    Thin-walled classes (bowl, vase) have a small 3 V / A, about 0.02: far above the sampling noise of 0.004.
    """
    cloud = ps.sample_shape(name, 16384, rng(1)).astype(np.float64)
    points, normals = cloud[:, :3], cloud[:, 3:]
    assert np.einsum("ij,ij->i", normals, points - points.mean(axis=0)).mean() > 0.01


@pytest.mark.parametrize("name", CONVEX)
def test_convex_classes_have_every_normal_outward(name):
    cloud = ps.sample_shape(name, 4096, rng(2)).astype(np.float64)
    assert (np.einsum("ij,ij->i", cloud[:, 3:], cloud[:, :3] - cloud[:, :3].mean(axis=0)) > -1e-6).all()


def test_sphere_class_lies_on_a_sphere_with_radial_normals():
    """Posed and normalised, a sphere instance is p = c + r n for one centre c and radius r > 0."""
    cloud = ps.sample_shape("sphere", 1024, rng(3)).astype(np.float64)
    points, normals = cloud[:, :3], cloud[:, 3:]
    design = np.zeros((3 * len(points), 4))
    design[:, :3] = np.tile(np.eye(3), (len(points), 1))
    design[:, 3] = normals.ravel()
    (cx, cy, cz, radius), *_ = np.linalg.lstsq(design, points.ravel(), rcond=None)
    assert radius > 0.9
    np.testing.assert_allclose(points, np.array([cx, cy, cz]) + radius * normals, atol=1e-5)


def test_box_class_is_six_planar_faces_with_analytic_normals():
    cloud = ps.sample_shape("box", 4096, rng(4), max_tilt_deg=15.0).astype(np.float64)
    points, normals = cloud[:, :3], cloud[:, 3:]
    _, face = np.unique(np.round(normals, 4), axis=0, return_inverse=True)
    directions = unit(np.stack([normals[face.ravel() == k].mean(axis=0) for k in range(face.max() + 1)]))
    assert len(directions) == 6
    np.testing.assert_allclose(directions @ directions.T, np.round(directions @ directions.T), atol=1e-6)  # 3 axes, +-
    centre = points.mean(axis=0)
    for k in range(6):
        offsets = (points[face.ravel() == k] - centre) @ directions[k]
        assert offsets.min() > 0 and offsets.max() - offsets.min() < 1e-5  # a plane, on the outer side


def implicit_residual_and_normal(part, points):
    """Distance of ``points`` to ``part``'s analytic surface and the analytic outward normal there."""
    p = points - np.array(part.centre if hasattr(part, "centre") else part.base)
    if isinstance(part, ps.Sphere):
        return np.linalg.norm(p, axis=1) - part.radius, unit(p)
    if isinstance(part, ps.Torus):
        if part.upright:
            p = np.stack([p[:, 0], p[:, 2], -p[:, 1]], axis=1)  # undo the turn about X
        rho = np.linalg.norm(p[:, [0, 2]], axis=1)
        ring = np.stack([part.major * p[:, 0] / rho, np.zeros(len(p)), part.major * p[:, 2] / rho], axis=1)
        normal = unit(p - ring)
        if part.upright:
            normal = np.stack([normal[:, 0], -normal[:, 2], normal[:, 1]], axis=1)
        return np.linalg.norm(p - ring, axis=1) - part.minor, normal
    if isinstance(part, ps.Frustum):
        t = p[:, 1] / part.height
        rho = np.linalg.norm(p[:, [0, 2]], axis=1)
        radial = np.stack([p[:, 0] / rho, np.zeros(len(p)), p[:, 2] / rho], axis=1)
        normal = unit(part.height * radial + np.array([0.0, part.r_bottom - part.r_top, 0.0]))
        assert ((t >= -1e-9) & (t <= 1 + 1e-9)).all()
        return rho - (part.r_bottom + (part.r_top - part.r_bottom) * t), -normal if part.inward else normal
    if isinstance(part, ps.Disc):
        rho = np.linalg.norm(p[:, [0, 2]], axis=1)
        assert ((rho >= part.r_in - 1e-9) & (rho <= part.r_out + 1e-9)).all()
        return p[:, 1], np.tile([0.0, 1.0 if part.up else -1.0, 0.0], (len(p), 1))
    if isinstance(part, ps.Box):
        scaled = np.abs(p) / np.array(part.half)
        axis = scaled.argmax(axis=1)
        normal = np.zeros_like(p)
        normal[np.arange(len(p)), axis] = np.sign(p[np.arange(len(p)), axis])
        return scaled.max(axis=1) - 1.0, normal
    raise AssertionError(f"no implicit form for {part}")


PARTS = [ps.Box((0.3, 0.5, 0.8), (0.1, -0.2, 0.3)), ps.Box((1.0, 0.2, 0.4), skip=("+y", "-x")),
         ps.Frustum(0.6, 0.6, 1.5, (0.0, -0.5, 0.2)), ps.Frustum(0.8, 0.0, 1.2), ps.Frustum(0.2, 0.7, 0.5),
         ps.Frustum(0.4, 0.4, 1.0, (0.0, 0.1, 0.0), inward=True), ps.Disc(0.7, (0.0, 0.3, 0.0), up=False),
         ps.Disc(0.5, up=True, r_in=0.4), ps.Sphere(0.7, (0.2, 0.1, -0.3)), ps.Torus(1.0, 0.3),
         ps.Torus(0.25, 0.04, (0.4, 0.5, 0.0), (-math.pi / 2, math.pi / 2), upright=True)]


@pytest.mark.parametrize("part", PARTS, ids=lambda part: type(part).__name__)
def test_parts_lie_on_their_analytic_surface_with_its_outward_normal(part):
    points, normals = part.sample(2000, rng(5))
    residual, analytic = implicit_residual_and_normal(part, points)
    np.testing.assert_allclose(residual, 0.0, atol=1e-9)
    np.testing.assert_allclose(normals, analytic, atol=1e-9)


def test_box_skips_faces_and_weights_the_rest_by_area():
    part = ps.Box((1.0, 0.5, 0.25), skip=("+y",))
    points, normals = part.sample(40000, rng(6))
    assert not (normals[:, 1] > 0.5).any()
    share_x = (np.abs(normals[:, 0]) > 0.5).mean()                  # 2 faces of 0.5 x 0.25 among 5 faces
    np.testing.assert_allclose(share_x, 2 * 0.5 / part.area, atol=0.01)


def test_cone_wall_and_torus_are_sampled_uniformly_over_area():
    points, _ = ps.Frustum(1.0, 0.0, 1.0).sample(40000, rng(7))
    np.testing.assert_allclose((points[:, 1] < 0.5).mean(), 0.75, atol=0.01)   # lower half holds 3/4 of a cone's wall
    points, normals = ps.Torus(1.0, 0.5).sample(40000, rng(8))
    outer = normals[:, 0] * points[:, 0] + normals[:, 2] * points[:, 2] > 0      # cos(phi) > 0: outer half
    np.testing.assert_allclose(outer.mean(), 0.5 + 0.5 / math.pi, atol=0.01)      # (pi R + 2 r) / (2 pi R)


def test_points_are_spread_over_parts_by_area():
    big, small = ps.Sphere(1.0), ps.Sphere(0.5, (3.0, 0.0, 0.0))
    points, _ = ps.sample_parts([big, small], 20000, rng(9))
    np.testing.assert_allclose((points[:, 0] > 2.0).mean(), 0.2, atol=0.01)      # area ratio 1 : 4
    assert (points[:1000, 0] > 2.0).any() and (points[:1000, 0] < 2.0).any()    # random order: prefixes mix parts


def test_sampling_is_deterministic_per_seed():
    a = ps.sample_shape("chair", 256, ps.instance_rng(0, 6, 1))
    np.testing.assert_array_equal(a, ps.sample_shape("chair", 256, ps.instance_rng(0, 6, 1)))
    assert not np.array_equal(a, ps.sample_shape("chair", 256, ps.instance_rng(1, 6, 1)))
    assert not np.array_equal(a, ps.sample_shape("chair", 256, ps.instance_rng(0, 6, 2)))


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """The layout with 2 train and 1 test shape per class, 64 points each."""
    root = tmp_path_factory.mktemp("shapes") / "modelnet40_normal_resampled"
    assert ps.write_dataset(str(root), 2, 1, num_points=64, seed=3) == 3 * len(ps.CLASSES)
    return root


def test_layout_loads_with_modelnet40_normal_resampled(written):
    train = ModelNet40NormalResampled(str(written), "train", num_points=64, use_normals=True)
    test = ModelNet40NormalResampled(str(written), "test", num_points=64)
    assert train.classes == ps.CLASSES and train.num_classes == len(ps.CLASSES)
    assert list(train.labels) == [k for k in range(len(ps.CLASSES)) for _ in range(2)]
    assert list(test.labels) == list(range(len(ps.CLASSES)))
    mug = ps.CLASSES.index("mug")
    expected = ps.sample_shape("mug", 64, ps.instance_rng(3, mug, 3))        # the mug's test shape: mug_0003
    np.testing.assert_allclose(test.points[mug], expected[:, :3], atol=1e-6)
    np.testing.assert_allclose(test.normals[mug], expected[:, 3:], atol=1e-6)
    assert train[0]["x"].shape == (64, 6)


def test_write_dataset_is_idempotent_resumable_and_guards_other_settings(written, tmp_path):
    assert ps.write_dataset(str(written), 2, 1, num_points=64, seed=3) == 0
    with pytest.raises(ConfigError, match="other settings"):
        ps.write_dataset(str(written), 2, 1, num_points=64, seed=4)
    root = tmp_path / "copy"
    ps.write_dataset(str(root), 2, 1, num_points=64, seed=3)
    original = (root / "torus" / "torus_0002.txt").read_text()
    (root / "torus" / "torus_0002.txt").unlink()
    manifest = root / ps.MANIFEST
    manifest.write_text(manifest.read_text().replace('"complete": true', '"complete": false'))
    assert ps.write_dataset(str(root), 2, 1, num_points=64, seed=3) == 1
    assert (root / "torus" / "torus_0002.txt").read_text() == original
    assert (root / "torus" / "torus_0002.txt").read_text() == (written / "torus" / "torus_0002.txt").read_text()


def test_make_shapes_tool(tmp_path, capsys):
    tool = load_tool("make_shapes")
    args = ["--out", str(tmp_path), "--per-class-train", "1", "--per-class-test", "1", "--points", "32"]
    assert tool.main(args) == 0 and tool.main(args) == 0
    assert "complete, nothing to do" in capsys.readouterr().out
    assert tool.main(args[:-1] + ["64"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert len((tmp_path / "box" / "box_0002.txt").read_text().splitlines()) == 32
