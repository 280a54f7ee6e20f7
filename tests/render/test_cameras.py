"""Camera convention: look_at, perspective, project, rotation_of, compensate_rotation."""

from __future__ import annotations

import math

import pytest
import torch

from plugin.render.cameras import compensate_rotation, look_at, perspective, project, rotation_of

from .random_geometry import random_rotations, unit_ball_clouds

EYE = torch.tensor([[0.3, -1.2, 2.5], [4.0, 1.0, 0.0], [0.0, 0.0, -3.0]], dtype=torch.float64)
TARGET = torch.tensor([[0.1, 0.2, -0.3], [0.0, 0.0, 0.0], [1.0, 0.5, 0.0]], dtype=torch.float64)
FOV, NEAR, FAR = 60.0, 0.1, 10.0


def _proj(b: int) -> torch.Tensor:
    return perspective(FOV, NEAR, FAR, dtype=torch.float64).expand(b, 4, 4)


def test_look_at_is_rigid_and_puts_the_target_on_minus_z():
    view = look_at(EYE, TARGET)
    rotation = rotation_of(view)
    eye3 = torch.eye(3, dtype=torch.float64).expand_as(rotation)
    torch.testing.assert_close(rotation @ rotation.transpose(1, 2), eye3)
    torch.testing.assert_close(torch.linalg.det(rotation), torch.ones(3, dtype=torch.float64))
    assert view[:, 3].tolist() == [[0.0, 0.0, 0.0, 1.0]] * 3
    target_cam = (view @ torch.cat([TARGET, torch.ones(3, 1, dtype=torch.float64)], 1)[..., None])
    distance = (TARGET - EYE).norm(dim=-1)
    torch.testing.assert_close(target_cam[:, :3, 0], torch.stack(
        [torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), -distance], 1))


def test_look_at_keeps_up_in_the_upper_half_of_the_image():
    view = look_at(torch.tensor([[0.0, 0.0, 3.0]]))  # default target origin, up +Y
    uv, _ = project(torch.tensor([[[0.0, 0.5, 0.0], [0.5, 0.0, 0.0]]]), view.float(),
                    perspective(FOV, NEAR, FAR).unsqueeze(0))
    assert uv[0, 0, 1] < 0.5 and uv[0, 1, 0] > 0.5  # world +Y up, world +X right


def test_target_projects_to_the_image_centre_at_its_distance():
    view = look_at(EYE, TARGET)
    uv, depth = project(TARGET.unsqueeze(1), view, _proj(3))
    torch.testing.assert_close(uv, torch.full((3, 1, 2), 0.5, dtype=torch.float64))
    torch.testing.assert_close(depth[:, 0], (TARGET - EYE).norm(dim=-1))


def test_u_grows_right_and_v_grows_down():
    view = look_at(EYE, TARGET)
    right, up = rotation_of(view)[:, 0], rotation_of(view)[:, 1]  # camera +X, +Y in world
    offset = 0.2
    points = torch.stack([TARGET + offset * right, TARGET + offset * up], dim=1)
    uv, _ = project(points, view, _proj(3))
    focal = 1 / math.tan(math.radians(FOV) / 2)
    shift = 0.5 * offset * focal / (TARGET - EYE).norm(dim=-1)  # NDC offset / 2
    torch.testing.assert_close(uv[:, 0], torch.stack([0.5 + shift, torch.full_like(shift, 0.5)], 1))
    torch.testing.assert_close(uv[:, 1], torch.stack([torch.full_like(shift, 0.5), 0.5 - shift], 1))


def test_depth_is_negative_behind_the_camera():
    view = look_at(EYE, TARGET)
    behind = (2 * EYE - TARGET).unsqueeze(1)  # mirror of the target through the camera
    _, depth = project(behind, view, _proj(3))
    assert (depth < 0).all()


def test_perspective_maps_near_and_far_planes_to_ndc_bounds():
    proj = perspective(FOV, NEAR, FAR, dtype=torch.float64)
    clip = proj @ torch.tensor([[0.0, 0.0, -NEAR, 1.0], [0.0, 0.0, -FAR, 1.0]],
                               dtype=torch.float64).T
    torch.testing.assert_close(clip[2] / clip[3], torch.tensor([-1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(clip[3], torch.tensor([NEAR, FAR], dtype=torch.float64))


def test_perspective_broadcasts_and_uses_aspect():
    proj = perspective(torch.tensor([40.0, 90.0]), NEAR, FAR, aspect=2.0)
    assert proj.shape == (2, 4, 4)
    torch.testing.assert_close(proj[1, 1, 1], torch.tensor(1.0))
    torch.testing.assert_close(proj[1, 0, 0], torch.tensor(0.5))


@pytest.mark.parametrize("fov,near,far", [(0.0, 0.1, 1.0), (180.0, 0.1, 1.0), (60.0, 0.0, 1.0),
                                          (60.0, 1.0, 0.5)])
def test_perspective_rejects_bad_settings(fov, near, far):
    with pytest.raises(ValueError, match="0 < near < far"):
        perspective(fov, near, far)


def test_look_at_rejects_degenerate_cameras():
    with pytest.raises(ValueError, match="parallel"):
        look_at(torch.tensor([0.0, 2.0, 0.0]))  # looking along -Y with up +Y
    with pytest.raises(ValueError, match="equals"):
        look_at(torch.tensor([1.0, 2.0, 3.0]), (1.0, 2.0, 3.0))


def test_compensate_rotation_preserves_projections(gen):
    points = unit_ball_clouds(gen, 3, 50, torch.float64)
    rotation = random_rotations(gen, 3, torch.float64)
    view = look_at(EYE, TARGET)
    rotated = points @ rotation.transpose(1, 2)
    want = project(points, view, _proj(3))
    got = project(rotated, compensate_rotation(view, rotation), _proj(3))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-12)
