"""render_points: splat size, background, depth and Lambert shading; save_png."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from plugin.render.cameras import look_at, perspective
from plugin.render.point_renderer import render_points, save_png

VIEW = look_at(torch.tensor([[0.0, 0.0, 2.0]]))  # looks down -Z at the origin
PROJ = perspective(90.0, 0.1, 10.0).unsqueeze(0)  # at z = 0 the image spans x, y in [-2, 2]


def _render(points, normals=None, **kwargs):
    normals = None if normals is None else torch.tensor([normals])
    return render_points(torch.tensor([points]), VIEW, PROJ, normals, **kwargs)


@pytest.mark.parametrize("radius", [0, 1, 2])
def test_isolated_point_covers_its_splat(radius):
    image, index = _render([[0.3, -0.2, 0.0]], image_size=32, radius_px=radius)
    assert image.shape == (1, 3, 32, 32) and index.shape == (1, 32, 32)
    assert (index == 0).sum() == (2 * radius + 1) ** 2 and (index == -1).sum() == 32**2 - (
        2 * radius + 1) ** 2


def test_background_and_range():
    image, index = _render([[0.0, 0.0, 0.0], [1.0, 1.0, -0.5]], image_size=16,
                           background=(0.0, 0.5, 1.0))
    empty = index[0] == -1
    assert image.min() >= 0 and image.max() <= 1
    for channel, value in enumerate([0.0, 0.5, 1.0]):
        assert (image[0, channel][empty] == value).all()
    covered = image[0][:, ~empty]
    assert (covered[0] == covered[1]).all() and (covered[1] == covered[2]).all()  # grey


def test_depth_shading_makes_nearer_points_brighter():
    image, index = _render([[-1.0, 0.0, 0.5], [1.0, 0.0, -0.5], [0.0, 1.0, 0.0]], image_size=16,
                           radius_px=0)
    grey = [image[0, 0][index[0] == k].item() for k in range(3)]
    assert grey[0] > grey[2] > grey[1]


def test_lambert_shading_follows_the_normal_angle_both_sides():
    normals = [[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    points = [[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0, 0.0]]
    image, index = _render(points, normals, image_size=16, radius_px=0)
    grey = [image[0, 0][index[0] == k].item() for k in range(4)]
    assert grey[0] == pytest.approx(grey[1])  # facing or facing away: |n . l|
    assert grey[0] > grey[2] > grey[3] > 0  # grazing light keeps the ambient term


def test_depth_shading_single_point_and_empty_image():
    image, index = _render([[0.0, 0.0, 0.0], [0.0, 0.0, 5.0]], image_size=8)  # 2nd is behind
    assert (index >= 0).sum() == 9 and torch.isfinite(image).all()
    empty, _ = _render([[0.0, 0.0, 5.0]], image_size=8)
    assert (empty == 1.0).all()


def test_invalid_arguments():
    with pytest.raises(ValueError, match="radius_px >= 0"):
        _render([[0.0, 0.0, 0.0]], radius_px=-1)


def test_save_png_round_trip(tmp_path):
    image, _ = _render([[0.0, 0.0, 0.0]], image_size=12, radius_px=2)
    path = tmp_path / "view.png"
    save_png(image[0], path)
    loaded = np.asarray(Image.open(path))
    assert loaded.shape == (12, 12, 3) and loaded.dtype == np.uint8
    want = (image[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(loaded, want)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        save_png(image, path)
