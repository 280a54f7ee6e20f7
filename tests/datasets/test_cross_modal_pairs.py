"""CrossModalPairs and DepthPairs: Cross-MoST's weak/strong image and point pairs, evaluation samples, settings."""
import random
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from openpoints.utils import EasyConfig
from PIL import Image
from timm.data.auto_augment import RandAugment
from torch.utils.data import DataLoader

from plugin.datasets import CrossModalPairs, DepthPairs
from plugin.datasets import cross_modal_pairs
from plugin.datasets.cross_modal_pairs import random_point_dropout, strong_points, weak_points
from plugin.datasets.rendered_views import center_and_scale, farthest_points
from plugin.engine.config_keys import accepted_keywords, find_unknown_keys
from plugin.errors import BadInputError, ConfigError, DataNotFoundError

from .conftest import view_green, write_pairs_folder

POINTS = 64
KEEP = 32
VIEWS = 3
SIZE = 16   # output image side
TRAIN_KEYS = {"img_weak", "img_strong", "pos_weak", "pos_strong", "y", "index"}
EVAL_KEYS = {"img", "img_views", "pos", "y", "index"}


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory) -> Path:
    """3 train and 2 test objects of 3 views each; off-centre, anisotropic clouds of 64 points."""
    rng = np.random.default_rng(0)

    def cloud() -> np.ndarray:
        return rng.normal(size=(POINTS, 3)) * np.array([3.0, 1.0, 0.5]) + np.array([5.0, -2.0, 1.0])

    return write_pairs_folder(tmp_path_factory.mktemp("pairs"), {"train": [cloud() for _ in range(3)],
                                                                 "test": [cloud() for _ in range(2)]})


def _seed(seed: int = 0) -> None:
    """Seed the three generators the runner seeds."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    random.seed(seed)


def _in_unit_range(image: torch.Tensor) -> bool:
    return image.dtype == torch.float32 and float(image.min()) >= 0 and float(image.max()) <= 1


# --- training samples ------------------------------------------------------------------------------------------

def test_training_sample_has_the_spec_keys_shapes_and_ranges(pairs_dir):
    _seed()
    data = CrossModalPairs(str(pairs_dir), "train", num_points=KEEP, image_size=SIZE)
    assert data.augment and data.classes == ["a", "b"] and len(data) == 3 and data.labels.dtype == np.int64
    sample = data[1]
    assert set(sample) == TRAIN_KEYS
    for key in ("img_weak", "img_strong"):
        assert sample[key].shape == (3, SIZE, SIZE) and _in_unit_range(sample[key]), key
    for key in ("pos_weak", "pos_strong"):
        assert sample[key].shape == (KEEP, 3) and sample[key].dtype == torch.float32, key
    assert sample["y"].dtype == sample["index"].dtype == torch.int64
    assert (int(sample["y"]), int(sample["index"])) == (1, 1)
    batch = next(iter(DataLoader(data, batch_size=2)))
    assert batch["img_strong"].shape == (2, 3, SIZE, SIZE) and batch["pos_weak"].shape == (2, KEEP, 3)


def test_weak_and_strong_images_come_from_one_random_view(pairs_dir):
    # no RandAugment layers (n0): the strong image keeps the view's constant green through crop and flip
    data = CrossModalPairs(str(pairs_dir), "train", num_points=KEEP, image_size=SIZE, rand_augment="rand-m9-n0")
    _seed(1)
    seen = set()
    for _ in range(12):
        sample = data[0]
        weak, strong = sample["img_weak"][1] * 255, sample["img_strong"][1] * 255
        view = [v for v in range(VIEWS) if torch.allclose(weak, torch.full_like(weak, view_green(v)), atol=0.5)]
        assert len(view) == 1
        assert torch.allclose(strong, torch.full_like(strong, view_green(view[0])), atol=0.5)
        seen.add(view[0])
    assert len(seen) > 1      # the view is drawn at random


def test_weak_points_are_a_scaled_centred_cloud_and_strong_ones_differ(pairs_dir):
    data = CrossModalPairs(str(pairs_dir), "train", num_points=KEEP, image_size=SIZE)
    _seed(2)
    radii = []
    for _ in range(8):
        sample = data[2]
        weak, strong = sample["pos_weak"], sample["pos_strong"]
        assert float(weak.mean(0).abs().max()) < 1e-5          # centred (rotation and scale keep the centroid)
        radius = float(weak.norm(dim=1).max())                  # unit sphere times the weak scale
        assert 0.9 - 1e-5 <= radius <= 1.1 + 1e-5
        radii.append(radius)
        assert not torch.allclose(weak, strong, atol=1e-2)
    assert max(abs(r - 1) for r in radii) > 1e-3              # the scale is drawn


def test_weak_points_rotate_a_little_and_scale():
    xyz = center_and_scale(np.random.default_rng(3).normal(size=(50, 3)).astype(np.float32))[0]
    np.random.seed(3)
    out = weak_points(xyz, (1.0, 1.0), sigma=10.0, clip=0.18)   # every angle clipped to +-0.18 rad
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), np.linalg.norm(xyz, axis=1), rtol=1e-5)
    cosine = (out * xyz).sum(1) / np.linalg.norm(xyz, axis=1) ** 2
    assert np.arccos(np.clip(cosine, -1, 1)).max() <= 3 * 0.18 + 1e-4 and not np.allclose(out, xyz, atol=1e-3)
    doubled = weak_points(xyz, (2.0, 2.0), sigma=0.0, clip=0.18)
    np.testing.assert_allclose(doubled, 2 * xyz, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("up_axis", [1, 2])
def test_strong_rotation_turns_about_the_up_axis(up_axis):
    xyz = np.random.default_rng(4).normal(size=(50, 3)).astype(np.float32)
    np.random.seed(4)
    out = strong_points(xyz, (1.0, 1.0), up_axis, translate=0.0, jitter_sigma=0.0, jitter_clip=0.0, max_dropout=0.0)
    others = [a for a in range(3) if a != up_axis]
    np.testing.assert_allclose(out[:, up_axis], xyz[:, up_axis], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out[:, others], axis=1), np.linalg.norm(xyz[:, others], axis=1),
                               rtol=1e-5)
    assert not np.allclose(out, xyz, atol=1e-3)


def test_strong_points_scale_translate_and_jitter_within_bounds():
    xyz = center_and_scale(np.random.default_rng(5).normal(size=(200, 3)).astype(np.float32))[0]
    np.random.seed(5)
    for _ in range(10):
        out = strong_points(xyz, (0.5, 2.0), 1, translate=0.2, jitter_sigma=0.01, jitter_clip=0.05, max_dropout=0.0)
        assert np.linalg.norm(out, axis=1).max() <= 2.0 + 0.2 * 3 ** 0.5 + 0.05 * 3 ** 0.5
        assert np.abs(out.mean(0)).max() <= 0.2 + 0.05 + 1e-5


def test_point_dropout_replaces_points_by_the_first():
    xyz = np.arange(300, dtype=np.float32).reshape(100, 3)
    np.random.seed(6)
    replaced = []
    for _ in range(10):
        out = random_point_dropout(xyz, 0.875)
        kept = (out == xyz).all(1)
        assert ((out[~kept] == xyz[0]).all(1)).all() and out.shape == xyz.shape
        replaced.append(int((~kept).sum()))
    assert max(replaced) > 0 and min(replaced) < 88             # ratios drawn from [0, 0.875)
    np.testing.assert_array_equal(random_point_dropout(xyz, 0.0), xyz)


def test_strong_image_is_timms_randaugment_and_stays_in_range(pairs_dir):
    data = CrossModalPairs(str(pairs_dir), "train", num_points=KEEP, image_size=SIZE)
    assert any(isinstance(t, RandAugment) for t in data.augmentation.strong_image.transforms)
    _seed(7)
    for _ in range(8):
        sample = data[0]
        assert _in_unit_range(sample["img_strong"]) and _in_unit_range(sample["img_weak"])
        assert not torch.equal(sample["img_strong"], sample["img_weak"])


# --- evaluation samples ----------------------------------------------------------------------------------------

def _resized(path: Path) -> torch.Tensor:
    image = Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)


@pytest.mark.parametrize("split, augment", [("test", None), ("train", False)])
def test_evaluation_samples_are_fixed_and_hold_every_view(pairs_dir, split, augment):
    data = CrossModalPairs(str(pairs_dir), split, num_points=KEEP, image_size=SIZE, augment=augment)
    first, second = data[1], data[1]
    assert set(first) == EVAL_KEYS and not data.augment
    for key in EVAL_KEYS:
        assert torch.equal(first[key], second[key]), key
    assert first["img_views"].shape == (VIEWS, 3, SIZE, SIZE) and first["img"].shape == (3, SIZE, SIZE)
    folder = pairs_dir / f"{split}_1"
    torch.testing.assert_close(first["img"], _resized(folder / "view_00.png"), atol=1e-6, rtol=0)
    for v in range(VIEWS):
        torch.testing.assert_close(first["img_views"][v], _resized(folder / f"view_{v:02d}.png"), atol=1e-6, rtol=0)
    stored = np.load(folder / "points.npy")
    np.testing.assert_allclose(first["pos"].numpy(), center_and_scale(stored[:KEEP])[0], atol=1e-6)
    assert abs(float(first["pos"].norm(dim=1).max()) - 1) < 1e-5


def test_eval_views_and_fps_sampling(pairs_dir):
    data = CrossModalPairs(str(pairs_dir), "test", num_points=KEEP, image_size=SIZE, eval_views=2, sampling="fps")
    sample = data[0]
    assert sample["img_views"].shape == (2, 3, SIZE, SIZE)
    stored = np.load(pairs_dir / "test_0" / "points.npy")
    expected = center_and_scale(stored[farthest_points(stored, KEEP)])[0]
    np.testing.assert_allclose(sample["pos"].numpy(), expected, atol=1e-5)


# --- settings and errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [
    ("strong_scale", (2.0, 0.5)), ("weak_scale", [0.9]), ("crop_scale", (0.3, 1.5)), ("max_dropout", 1.0),
    ("translate", -0.1), ("jitter_sigma", "0.01"), ("up_axis", 3), ("up_axis", True), ("hflip", 2.0),
    ("rand_augment", "augmix-m5"), ("rand_augment", "rand-zz9"), ("crop_pct", 0), ("image_size", 0),
    ("num_points", 0), ("eval_views", 0), ("eval_views", VIEWS + 1), ("sampling", "grid"), ("augment", "yes"),
])
def test_bad_settings_name_their_key(pairs_dir, key, value):
    with pytest.raises(ConfigError, match=f"dataset.common.{key}"):
        CrossModalPairs(str(pairs_dir), "train", **{key: value})


def test_unknown_keys_are_rejected_and_the_validator_knows_the_named_ones(pairs_dir):
    with pytest.raises(ConfigError, match="foo") as raised:
        CrossModalPairs(str(pairs_dir), "train", foo=1)
    assert "strong_scale" in str(raised.value) and "rand_augment" in str(raised.value)
    for cls in (CrossModalPairs, DepthPairs):
        keys = accepted_keywords(cls)
        assert keys is not None and {"weak_scale", "strong_scale", "rand_augment", "eval_views", "up_axis",
                                     "transform"} <= keys
    assert {"variant", "views", "dilation"} <= accepted_keywords(DepthPairs)
    dataset = {"common": {"NAME": "CrossModalPairs", "data_dir": str(pairs_dir), "strong_scal": [0.5, 2.0]}}
    (unknown,) = find_unknown_keys(EasyConfig({"dataset": dataset}))
    assert unknown.key == "strong_scal"


def test_missing_folder_and_split_list_are_data_not_found(pairs_dir, tmp_path):
    with pytest.raises(DataNotFoundError, match="dataset.common.data_dir"):
        CrossModalPairs(str(tmp_path / "absent"))
    write_pairs_folder(tmp_path / "train_only", {"train": [np.zeros((POINTS, 3))]})
    with pytest.raises(DataNotFoundError, match="test.txt"):
        CrossModalPairs(str(tmp_path / "train_only"), "test")


@pytest.mark.parametrize("cloud, fix", [
    (np.full((POINTS, 3), np.nan), "NaN"), (np.zeros((0, 3)), "empty"), (np.ones((KEEP - 1, 3)), "num_points"),
])
def test_bad_points_are_bad_input(tmp_path, cloud, fix):
    root = write_pairs_folder(tmp_path / "bad", {"train": [cloud]})
    data = CrossModalPairs(str(root), "train", num_points=KEEP, image_size=SIZE)
    with pytest.raises(BadInputError, match=fix) as raised:
        data[0]
    assert str(root / "train_0" / "points.npy") in str(raised.value)


# --- DepthPairs ------------------------------------------------------------------------------------------------

@pytest.fixture
def rendered_views(monkeypatch) -> List[int]:
    """Counts the views each depth rendering draws."""
    counts = []
    render = cross_modal_pairs.render_depth

    def counting(points, view, *args):
        counts.append(view.shape[0])
        return render(points, view, *args)

    monkeypatch.setattr(cross_modal_pairs, "render_depth", counting)
    return counts


def test_depth_pairs_render_one_view_to_train_on(scanobjectnn_root, rendered_views):
    data = DepthPairs(str(scanobjectnn_root), "train", variant="OBJ_ONLY", num_points=KEEP, image_size=SIZE,
                      cache_fps=False)
    assert len(data) == 4 and data.augment and data.num_views == 6 and data.classes[0] == "bag"
    _seed(8)
    sample = data[3]
    assert set(sample) == TRAIN_KEYS and rendered_views == [1]
    assert (int(sample["y"]), int(sample["index"])) == (3, 3)
    for key in ("img_weak", "img_strong"):
        assert sample[key].shape == (3, SIZE, SIZE) and _in_unit_range(sample[key]), key
    assert float(sample["img_weak"].std()) > 0.05
    assert sample["pos_weak"].shape == sample["pos_strong"].shape == (KEEP, 3)


def test_depth_pairs_evaluation_renders_every_view(scanobjectnn_root, rendered_views):
    data = DepthPairs(str(scanobjectnn_root), "test", variant="OBJ_BG", num_points=KEEP, image_size=SIZE,
                      views="orthogonal_corner10", cache_fps=False)
    first, second = data[1], data[1]
    assert set(first) == EVAL_KEYS and rendered_views == [10, 10]
    for key in EVAL_KEYS:
        assert torch.equal(first[key], second[key]), key
    views = first["img_views"]
    assert views.shape == (10, 3, SIZE, SIZE) and _in_unit_range(views) and torch.equal(first["img"], views[0])
    assert (views.flatten(1).std(1) > 0.05).all()                     # every view shows the object
    assert abs(float(first["pos"].norm(dim=1).max()) - 1) < 1e-5
    assert DepthPairs(str(scanobjectnn_root), "test", variant="OBJ_BG", num_points=KEEP, image_size=SIZE,
                      eval_views=2, cache_fps=False)[0]["img_views"].shape == (2, 3, SIZE, SIZE)


@pytest.mark.parametrize("key, value", [("views", "cube"), ("dilation", 0), ("eval_views", 7), ("up_axis", -1)])
def test_depth_pairs_bad_settings_name_their_key(scanobjectnn_root, key, value):
    with pytest.raises(ConfigError, match=f"dataset.common.{key}"):
        DepthPairs(str(scanobjectnn_root), "train", num_points=KEEP, **{key: value})


def test_depth_pairs_unknown_variant_and_missing_data(scanobjectnn_root, tmp_path):
    with pytest.raises(ConfigError, match="variant"):
        DepthPairs(str(scanobjectnn_root), "train", variant="OBJ", num_points=KEEP)
    with pytest.raises(DataNotFoundError):
        DepthPairs(str(tmp_path / "absent"), "train", num_points=KEEP)
    with pytest.raises(ConfigError, match="bogus"):
        DepthPairs(str(scanobjectnn_root), "train", num_points=KEEP, bogus=1)


# --- subsets and the RandAugment magnitude ------------------------------------------------------------------------

def test_modelnet10_subset_keeps_its_classes_relabelled_in_its_order(tmp_path):
    from plugin.datasets.modelnet40 import MODELNET10_CLASSES

    # object k has label k over these names: airplane is dropped, the others take ModelNet10's labels
    classes = ["bed", "airplane", "toilet", "bathtub", "chair", "desk", "dresser", "monitor", "night_stand", "sofa",
               "table"]
    clouds = {"train": [np.random.default_rng(k).normal(size=(POINTS, 3)) for k in range(8)], "test": []}
    root = write_pairs_folder(tmp_path / "mn", clouds, classes=classes, views=1)
    data = CrossModalPairs(str(root), "train", num_points=KEEP, image_size=SIZE, subset="modelnet10")
    assert data.classes == MODELNET10_CLASSES and len(data) == 7
    assert data.labels.tolist() == [1, 9, 0, 2, 3, 4, 5]
    assert [data[i]["y"].item() for i in range(len(data))] == data.labels.tolist()
    assert len(CrossModalPairs(str(root), "train", num_points=KEEP, image_size=SIZE)) == 8
    with pytest.raises(ConfigError, match="subset"):
        CrossModalPairs(str(root), "train", num_points=KEEP, image_size=SIZE, subset="modelnet20")
    with pytest.raises(ConfigError, match="lacks"):
        CrossModalPairs(str(write_pairs_folder(tmp_path / "ab", clouds, views=1)), "train", num_points=KEEP,
                        subset="modelnet10")


def test_default_randaugment_never_asks_pillow_for_zero_posterize_bits():
    # at magnitude 10 timm's PosterizeIncreasing keeps 0 bits, which Pillow >= 10 refuses; the default caps it at 9
    augmentation = cross_modal_pairs.PairAugmentation(image_size=SIZE)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    _seed(0)
    for _ in range(300):
        assert _in_unit_range(augmentation.strong_image(image))
