"""Depth-map encodings of the depth renderer: the CLIP2Point release's preset against a hand computation."""

from __future__ import annotations

import pytest
import torch

from plugin.render import DepthRenderer, depth_to_image
from plugin.render.depth_renderer import CLIP2POINT_ENCODING, ENCODINGS

from .random_geometry import unit_ball_clouds

INF = float("inf")
PLAIN = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # no standardisation: the grey levels themselves


def test_release_encoding_matches_a_hand_computation():
    depth = torch.tensor([[[[2.0, 3.0], [4.0, INF]]]])  # (1, 1, 2, 2); d_min 2, d_max 4
    grey = DepthRenderer(encoding="clip2point_release", **PLAIN).to_image(depth)[0, 0]
    # (d - d_min) / d_max * 200/255: near points dark; the empty pixel white
    want = torch.tensor([[0.0, 1 / 4 * 200 / 255], [2 / 4 * 200 / 255, 1.0]])
    torch.testing.assert_close(grey, want.expand(3, 2, 2), rtol=0, atol=1e-7)
    standardised = DepthRenderer(encoding="clip2point_release", mean=(0.5, 0.25, 0.0), std=(0.5, 2.0, 1.0))
    torch.testing.assert_close(standardised.to_image(depth)[0, 0, :, 1, 1], torch.tensor([1.0, 0.375, 1.0]))


def test_near_bright_preset_keeps_the_earlier_encoding():
    depth = torch.tensor([[[[2.0, 3.0], [4.0, INF]]]])
    grey = DepthRenderer(encoding="near_bright", **PLAIN).to_image(depth)[0, 0, 0]
    torch.testing.assert_close(grey, torch.tensor([[1.0, 0.5], [0.0, 0.0]]))  # 1 - (d - 2) / 2, black background
    assert torch.equal(DepthRenderer(**PLAIN).to_image(depth), DepthRenderer(encoding="near_bright", **PLAIN)
                       .to_image(depth))                                        # the renderer's own default


def test_presets_set_the_three_keys_and_explicit_keys_override_them(gen):
    assert CLIP2POINT_ENCODING == "clip2point_release"
    for name, preset in ENCODINGS.items():
        renderer = DepthRenderer(image_size=16, encoding=name)
        assert (renderer.normalise, renderer.near_bright, renderer.background) == (
            preset["normalise"], preset["near_bright"], preset["background"])
    grey_background = DepthRenderer(image_size=16, encoding="clip2point_release", background=0.5, **PLAIN)
    points = unit_ball_clouds(gen, 2, 200, torch.float32)
    images = grey_background(points)
    assert images.shape == (2, 6, 3, 16, 16) and images.max() <= 200 / 255 + 1e-6  # no white left: grey background
    assert (images == 0.5).any() and (images == 0).any()                          # background and nearest points
    with pytest.raises(ValueError, match="unknown encoding 'sepia'"):
        DepthRenderer(encoding="sepia")
    with pytest.raises(ValueError, match="set near_bright to False"):
        DepthRenderer(encoding="clip2point_release", near_bright=True)
    with pytest.raises(ValueError, match="set near_bright to False"):
        depth_to_image(torch.ones(1, 2, 2), normalise="min_over_max")


def test_release_encoding_of_rendered_clouds_draws_near_points_dark(gen):
    points = unit_ball_clouds(gen, 3, 300, torch.float32)
    renderer = DepthRenderer(image_size=24, views="orthogonal_corner10", encoding="clip2point_release", **PLAIN)
    maps = renderer.render(points).depth
    grey = renderer(points)[:, :, 0]
    covered = torch.isfinite(maps)
    assert torch.equal(grey[~covered], torch.ones_like(grey[~covered]))   # white background
    nearest = maps.where(covered, INF).flatten(2).argmin(-1)              # the nearest pixel of each image is black
    assert (grey.flatten(2).gather(2, nearest.unsqueeze(-1)) == 0).all()
    d_min = maps.where(covered, INF).amin((-2, -1), keepdim=True)
    d_max = maps.where(covered, -INF).amax((-2, -1), keepdim=True)
    torch.testing.assert_close(grey[covered], ((maps - d_min) / d_max * 200 / 255)[covered])
