"""RenderedViews: xyz-only clouds, augmentation switch, sampling, SO(3) rotations, unnormalised images."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from plugin.datasets import RenderedViews
from plugin.datasets.rendered_views import PointCloudUnitSphere, center_and_scale, random_rotation
from plugin.errors import ConfigError
from plugin.render.cameras import project

from ..conftest import load_tool

POINTS = 200
KEEP = 64


@pytest.fixture(scope="module")
def xyz_views(tmp_path_factory) -> Path:
    """3 train + 1 test xyz-only objects (no normals, as ShapeNet-55's), rendered at 32 px."""
    tool, root = load_tool("render_views"), tmp_path_factory.mktemp("xyz_views")
    rng = np.random.default_rng(0)
    opts = {"image_size": 32, "radius_px": 1, "distance": 2.2, "fov": 60.0}
    for split, count in (("train", 3), ("test", 1)):
        ids = [f"{split}_{i}" for i in range(count)]
        for object_id in ids:
            cloud = rng.normal(size=(POINTS, 3)) * np.array([1.0, 0.5, 0.3])   # anisotropic: rotations show
            tool.render_object((str(root / object_id), cloud.astype(np.float32), opts))
        (root / f"{split}.txt").write_text("".join(f"{o} {i}\n" for i, o in enumerate(ids)))
    (root / "meta.json").write_text(json.dumps({"classes": ["a", "b", "c"]}))
    return root


def _stored(root: Path, object_id: str = "train_0") -> np.ndarray:
    return np.load(root / object_id / "points.npy")


def test_xyz_only_training_sample_is_rotated_and_keeps_its_projections(xyz_views):
    np.random.seed(0)
    data = RenderedViews(str(xyz_views), "train", num_points=KEEP)
    sample = data[0]                                   # crashed: the empty normals array was rotated
    assert sample["pos"].shape == (KEEP, 3) and sample["x"].shape == (KEEP, 3)
    original = torch.from_numpy(_stored(xyz_views))
    cameras = np.load(xyz_views / "train_0" / "cameras.npz")
    # the sample's view is view_v @ [R^T]: exactly one camera v maps the sample back onto stored points
    found = []
    for v, view in enumerate(torch.from_numpy(cameras["view"])):
        rot = (view[:3, :3].t() @ sample["view"][:3, :3]).t()
        exact = "donot_use_mm_for_euclid_dist"
        nearest = torch.cdist(sample["pos"] @ rot, original, compute_mode=exact).min(dim=1)
        if float(nearest.values.max()) < 1e-4:            # float32 round-off ~1e-6; a wrong camera is off by > 0.1
            found.append((v, view, nearest.indices))
    assert len(found) == 1
    v, view, indices = found[0]
    assert not torch.allclose(sample["pos"], original[indices], atol=1e-3)     # the points were rotated
    uv, depth = project(sample["pos"][None], sample["view"][None], sample["proj"][None])
    uv0, depth0 = project(original[indices][None], view[None], sample["proj"][None])
    torch.testing.assert_close(uv, uv0, atol=1e-5, rtol=0)
    torch.testing.assert_close(depth, depth0, atol=1e-5, rtol=0)
    png = np.asarray(Image.open(xyz_views / "train_0" / f"view_{v:02d}.png").convert("RGB"), dtype=np.float32)
    torch.testing.assert_close(sample["img"], torch.from_numpy(png / 255.0).permute(2, 0, 1))   # unnormalised
    height = sample["pos"][:, 1:2]
    torch.testing.assert_close(sample["heights"], height - height.min())


@pytest.mark.parametrize("split, augment", [("train", False), ("test", None)])
def test_without_augmentation_points_and_view_are_fixed(xyz_views, split, augment):
    data = RenderedViews(str(xyz_views), split, num_points=KEEP, augment=augment)
    first, second = data[0], data[0]
    object_id = f"{split}_0"
    for key in ("pos", "img", "view"):
        assert torch.equal(first[key], second[key]), key
    np.testing.assert_array_equal(first["pos"].numpy(), _stored(xyz_views, object_id)[:KEEP])
    np.testing.assert_array_equal(first["view"].numpy(), np.load(xyz_views / object_id / "cameras.npz")["view"][0])


def test_fps_sampling_is_deterministic_farthest_points(xyz_views):
    stored = _stored(xyz_views)
    for augment in (False, True):
        np.random.seed(1)
        data = RenderedViews(str(xyz_views), "train", num_points=KEEP, augment=augment, sampling="fps")
        pos = data[0]["pos"]
        if augment:                                    # rotated: compare rotation-invariant distances
            pos = pos - pos[:1]
            reference = torch.from_numpy(fixed - fixed[:1])
            torch.testing.assert_close(pos.norm(dim=1), reference.norm(dim=1), atol=1e-5, rtol=0)
            continue
        fixed = pos.numpy()
        np.testing.assert_array_equal(fixed[0], stored[0])                          # FPS starts at point 0
        distance = np.linalg.norm(stored - stored[:1], axis=1)
        np.testing.assert_array_equal(fixed[1], stored[distance.argmax()])         # then the farthest point
        assert len(np.unique(fixed, axis=0)) == KEEP


def test_null_rotation_axis_rotates_uniformly_on_so3(xyz_views):
    np.random.seed(2)
    rotations = np.stack([random_rotation() for _ in range(4000)])
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (4000, 3, 3)),
                               atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-5)
    assert np.abs(rotations.mean(axis=0)).max() < 0.05          # E[R] = 0 for the uniform (Haar) distribution
    stored = _stored(xyz_views)
    for axis, changes_y in ((1, False), (None, True)):
        np.random.seed(3)
        pos = RenderedViews(str(xyz_views), "train", num_points=POINTS, rotation_axis=axis)[0]["pos"].numpy()
        kept_y = np.allclose(np.sort(pos[:, 1]), np.sort(stored[:, 1]), atol=1e-5)
        assert kept_y != changes_y, axis


@pytest.mark.parametrize("kwargs, needle", [
    ({"sampling": "uniform"}, r"dataset\.common\.sampling is 'uniform': set it to random or fps"),
    ({"augment": "yes"}, r"dataset\.common\.augment is 'yes'"),
    ({"rotation_axis": 3}, r"dataset\.common\.rotation_axis is 3"),
    ({"image_mean": [0.5, 0.5, 0.5]}, r"remove dataset\.common\.image_mean and image_std"),
    ({"rotation_axs": 1}, r"Unknown argument\(s\) rotation_axs of the rendered views: use data_dir"),
])
def test_invalid_arguments_are_one_sentence(xyz_views, kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        RenderedViews(str(xyz_views), "train", num_points=KEEP, **kwargs)


def test_unit_sphere_transform_is_the_pre_training_normalisation():
    rng = np.random.default_rng(4)
    cloud = (rng.normal(size=(50, 3)) * 3 + 5).astype(np.float32)
    out, scale = center_and_scale(cloud)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)
    assert np.linalg.norm(out, axis=1).max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(load_tool("render_views").normalise(cloud), out)     # what render_views writes
    heights = torch.from_numpy(cloud[:, 1:2] - cloud[:, 1:2].min())
    data = PointCloudUnitSphere(gravity_dim=1)({"pos": torch.from_numpy(cloud), "heights": heights})
    torch.testing.assert_close(data["pos"], torch.from_numpy(out))
    torch.testing.assert_close(data["heights"], data["pos"][:, 1:2] - data["pos"][:, 1:2].min(), atol=1e-6, rtol=0)
