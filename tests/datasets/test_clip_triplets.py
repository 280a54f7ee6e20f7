"""ClipTriplets: the per-category train/val holdout, unit-sphere points and their augmentation (Sec. 4.1), view
images, and the precomputed embeddings and similarity rows of a store."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from openpoints.utils import EasyConfig
from PIL import Image
from torch.utils.data import DataLoader

from plugin.clip.similarity_store import file_fingerprint, make_manifest, write_category, write_manifest
from plugin.datasets import ClipTriplets
from plugin.datasets.clip_triplets import holdout_mask
from plugin.datasets.rendered_views import center_and_scale, farthest_points
from plugin.engine.config_keys import find_unknown_keys
from plugin.errors import BadInputError, ConfigError, DataNotFoundError

REPO = Path(__file__).resolve().parents[2]
POINTS = 256
VIEWS = 3
SIZE = 4
TRAIN = {"a": 10, "b": 5, "c": 1}  # objects per category in train.txt
CLASSES = list(TRAIN)


def _colour(object_number: int, view: int) -> np.ndarray:
    """The constant RGB colour (uint8) of one object's view: names both, so a loaded image can be traced."""
    return np.array([object_number * 7 % 256, 40 * view, 200], dtype=np.uint8)


@pytest.fixture(scope="module")
def triplets(tmp_path_factory) -> Path:
    """A rendered-views folder without cameras: 16 train and 2 test objects, 3 views each, clouds off-centre."""
    root = tmp_path_factory.mktemp("triplets")
    rng = np.random.default_rng(0)
    lines = {"train": [], "test": []}
    number = 0
    for split, counts in (("train", TRAIN), ("test", {"a": 1, "b": 1})):
        for label, name in enumerate(CLASSES):
            for k in range(counts.get(name, 0)):
                object_id = f"{name}_{split}_{k:02d}"
                folder = root / object_id
                folder.mkdir()
                cloud = rng.normal(size=(POINTS, 3)) * np.array([3.0, 1.0, 0.5]) + np.array([5.0, -2.0, 1.0])
                np.save(folder / "points.npy", cloud.astype(np.float32))
                for v in range(VIEWS):
                    pixels = np.broadcast_to(_colour(number, v), (SIZE, SIZE, 3)).copy()
                    Image.fromarray(pixels).save(folder / f"view_{v:02d}.png")
                lines[split].append(f"{object_id} {label}\n")
                number += 1
    for split, rows in lines.items():
        (root / f"{split}.txt").write_text("".join(rows))
    (root / "meta.json").write_text(json.dumps({"classes": CLASSES, "views": VIEWS}))
    return root


def _number(root: Path, object_id: str) -> int:
    """The fixture's running number of an object (its line among train.txt then test.txt)."""
    ids = [line.split()[0] for s in ("train", "test") for line in (root / f"{s}.txt").read_text().splitlines()]
    return ids.index(object_id)


def _stored(root: Path, object_id: str) -> np.ndarray:
    return np.load(root / object_id / "points.npy")


# --- the holdout -----------------------------------------------------------------------------------------------

def test_holdout_keeps_a_fifth_of_each_category_whatever_the_order():
    ids = [f"{c}{i}" for c, n in (("a", 10), ("b", 5), ("c", 1), ("d", 7)) for i in range(n)]
    labels = [c for c, n in enumerate((10, 5, 1, 7)) for _ in range(n)]
    held = holdout_mask(ids, labels, 0.2, seed=3)
    counts = [int(held[np.array(labels) == c].sum()) for c in range(4)]
    assert counts == [2, 1, 0, 1]            # floor(0.2 n + 1/2): 2, 1, 0 (a lone object stays in train), 1
    order = np.random.default_rng(1).permutation(len(ids))
    shuffled = holdout_mask([ids[k] for k in order], [labels[k] for k in order], 0.2, seed=3)
    assert {ids[k] for k, h in zip(order, shuffled) if h} == {i for i, h in zip(ids, held) if h}
    others = [holdout_mask(ids, labels, 0.2, seed=s) for s in range(4, 12)]
    assert any(not np.array_equal(o, held) for o in others)   # the seed selects another division
    assert holdout_mask(ids, labels, 0.0).sum() == 0
    assert holdout_mask(ids, labels, 0.99).sum() == sum(n - 1 for n in (10, 5, 1, 7))   # one object stays


def test_holdout_refuses_a_duplicate_object():
    with pytest.raises(BadInputError, match="'x' occurs twice"):
        holdout_mask(["x", "y", "x"], [0, 0, 0], 0.2)


def test_train_and_val_divide_train_txt_and_do_not_depend_on_its_line_order(triplets, tmp_path):
    train, val = ClipTriplets(str(triplets), "train"), ClipTriplets(str(triplets), "val")
    all_train = [line.split()[0] for line in (triplets / "train.txt").read_text().splitlines()]
    assert not set(train.object_ids) & set(val.object_ids)
    assert sorted(train.object_ids + val.object_ids) == sorted(all_train)
    assert [int((val.labels == c).sum()) for c in range(3)] == [2, 1, 0]
    assert ClipTriplets(str(triplets), "test").object_ids == ["a_test_00", "b_test_00"]
    reordered = tmp_path / "reordered"
    reordered.mkdir()
    lines = (triplets / "train.txt").read_text().splitlines()
    (reordered / "train.txt").write_text("\n".join(reversed(lines)) + "\n")
    (reordered / "meta.json").write_text((triplets / "meta.json").read_text())
    assert sorted(ClipTriplets(str(reordered), "val").object_ids) == sorted(val.object_ids)
    assert set(ClipTriplets(str(triplets), "val", split_seed=5).object_ids) != set(val.object_ids) or \
        set(ClipTriplets(str(triplets), "val", split_seed=6).object_ids) != set(val.object_ids)


# --- points and images -----------------------------------------------------------------------------------------

def test_evaluation_sample_is_the_unit_sphere_first_points_and_view_0(triplets):
    data = ClipTriplets(str(triplets), "test", num_points=64)
    sample = data[1]
    expected = center_and_scale(_stored(triplets, "b_test_00")[:64])[0]
    assert torch.allclose(sample["pos"], torch.from_numpy(expected), atol=1e-6)
    assert float(sample["pos"].norm(dim=1).max()) == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(sample["x"], sample["pos"])
    assert float(sample["heights"].min()) == 0.0
    assert torch.allclose(sample["heights"][:, 0], sample["pos"][:, 1] - sample["pos"][:, 1].min())
    assert int(sample["y"]) == 1 and int(sample["index"]) == 1 and int(sample["view_index"]) == 0
    colour = _colour(_number(triplets, "b_test_00"), 0) / 255.0
    assert sample["img"].shape == (3, SIZE, SIZE)
    assert torch.allclose(sample["img"], torch.tensor(colour, dtype=torch.float32)[:, None, None].expand(3, SIZE, SIZE))
    again = data[1]
    assert torch.equal(again["pos"], sample["pos"])        # no randomness outside augmentation


def test_fps_sampling_takes_the_same_farthest_point_sample_every_time(triplets):
    stored = _stored(triplets, "b_test_00")
    expected = torch.from_numpy(center_and_scale(stored[farthest_points(stored, 64)])[0])
    evaluation = ClipTriplets(str(triplets), "test", num_points=64, sampling="fps")
    assert torch.allclose(evaluation[1]["pos"], expected, atol=1e-6)
    assert not torch.allclose(ClipTriplets(str(triplets), "test", num_points=64)[1]["pos"], expected, atol=1e-2)
    training = ClipTriplets(str(triplets), "test", num_points=64, sampling="fps", augment=True, translate=0.0,
                            jitter_sigma=0.0)
    for seed in range(3):                                 # the same points, each time rotated about y
        np.random.seed(seed)
        pos = training[1]["pos"]
        assert torch.allclose(pos[:, 1], expected[:, 1], atol=1e-6)
        radius, expected_radius = torch.hypot(pos[:, 0], pos[:, 2]), torch.hypot(expected[:, 0], expected[:, 2])
        assert torch.allclose(radius, expected_radius, atol=1e-5)
        assert not torch.allclose(pos, expected, atol=1e-2)


def _replayed(root: Path, object_id: str, seed: int) -> np.ndarray:
    """The unaugmented unit-sphere points of a training sample drawn after ``np.random.seed(seed)``: the same
    point permutation replayed."""
    np.random.seed(seed)
    order = np.random.permutation(POINTS)
    return center_and_scale(_stored(root, object_id)[order].astype(np.float32))[0]


def _augmented(root: Path, seed: int, **settings) -> np.ndarray:
    data = ClipTriplets(str(root), "train", num_points=POINTS, **settings)
    np.random.seed(seed)
    return data[0]["pos"].numpy(), data.object_ids[0]


def _fitted(ref: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The 3x3 map ``rot`` with ``pos = ref @ rot`` (least squares), checked to be exact and a rotation."""
    rot, *_ = np.linalg.lstsq(ref, pos, rcond=None)
    assert np.allclose(ref @ rot, pos, atol=1e-5)
    assert np.allclose(rot @ rot.T, np.eye(3), atol=1e-4) and np.linalg.det(rot) == pytest.approx(1.0, abs=1e-4)
    return rot


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_rotation_about_an_axis_keeps_that_coordinate_and_distances_to_the_axis(triplets, axis):
    pos, object_id = _augmented(triplets, 1 + axis, rotation_axis=axis, translate=0.0, jitter_sigma=0.0)
    ref = _replayed(triplets, object_id, 1 + axis)
    others = [a for a in range(3) if a != axis]
    assert np.allclose(pos[:, axis], ref[:, axis], atol=1e-6)
    assert np.allclose(np.hypot(*pos[:, others].T), np.hypot(*ref[:, others].T), atol=1e-5)
    assert not np.allclose(_fitted(ref, pos), np.eye(3), atol=1e-2)


def test_rotation_axis_null_rotates_uniformly_and_moves_every_axis(triplets):
    pos, object_id = _augmented(triplets, 2, rotation_axis=None, translate=0.0, jitter_sigma=0.0)
    rot = _fitted(_replayed(triplets, object_id, 2), pos)
    assert (np.abs(np.diag(rot)) < 0.999).all()           # not a rotation about a coordinate axis


def test_translation_shifts_the_whole_cloud_within_the_range(triplets):
    shifts = []
    for seed in range(20):
        pos, object_id = _augmented(triplets, seed, translate=0.1, jitter_sigma=0.0)   # rotated about y too
        ref = _replayed(triplets, object_id, seed)
        shift = pos.mean(0)                                # the unit-sphere cloud and its rotation are centred at 0
        _fitted(ref, pos - shift)                          # the rest is the rotation: one shift for every point
        assert np.allclose(pos[:, 1] - ref[:, 1], shift[1], atol=1e-6)
        shifts.append(shift)
    shifts = np.array(shifts)
    assert np.abs(shifts).max() <= 0.1 + 1e-6
    assert (shifts > 0.02).any(axis=0).all() and (shifts < -0.02).any(axis=0).all()


def _jitter(root: Path, clip: float) -> np.ndarray:
    """The jitter along each rotation axis in turn (a rotation keeps the coordinate along its axis)."""
    noise = []
    for axis in range(3):
        pos, object_id = _augmented(root, 4, rotation_axis=axis, translate=0.0, jitter_sigma=0.01, jitter_clip=clip)
        noise.append(pos[:, axis] - _replayed(root, object_id, 4)[:, axis])
    return np.concatenate(noise)


def test_jitter_is_per_point_gaussian_and_clipped(triplets):
    noise = _jitter(triplets, 0.05)
    assert noise.std() == pytest.approx(0.01, rel=0.1) and abs(noise.mean()) < 0.002
    noise = _jitter(triplets, 0.005)
    assert np.abs(noise).max() <= 0.005 + 1e-6 and (np.abs(noise) > 0.0049).mean() > 0.3   # most are clipped


def _normals_folder(root: Path, columns: int) -> Path:
    """One test object whose normals point away from the cloud's mean, so normal = pos / |pos| in the unit
    sphere frame, however the cloud is rotated; ``columns`` 3 writes the points without them."""
    cloud = np.random.default_rng(1).normal(size=(POINTS, 3)) + np.array([2.0, 0.0, -1.0])
    centred = cloud - cloud.mean(0)
    normals = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    (root / "a_test_00").mkdir(parents=True)
    np.save(root / "a_test_00" / "points.npy", np.concatenate([cloud, normals], 1)[:, :columns].astype(np.float32))
    Image.fromarray(np.zeros((SIZE, SIZE, 3), dtype=np.uint8)).save(root / "a_test_00" / "view_00.png")
    (root / "test.txt").write_text("a_test_00 0\n")
    (root / "meta.json").write_text(json.dumps({"classes": ["a"], "views": 1}))
    return root


def test_use_normals_appends_the_normals_rotated_with_the_points(tmp_path):
    root = str(_normals_folder(tmp_path / "normals", 6))
    fixed = dict(num_points=POINTS, use_normals=True, translate=0.0, jitter_sigma=0.0)
    plain = ClipTriplets(root, "test", **fixed)[0]["pos"]
    assert ClipTriplets(root, "test", num_points=POINTS)[0]["x"].shape == (POINTS, 3)   # without use_normals
    mirror = lambda data: {"pos": -data["pos"], "normals": -data["normals"]}  # noqa: E731
    for settings in ({}, {"augment": True, "rotation_axis": 0}, {"augment": True, "rotation_axis": None},
                     {"transform": mirror}):
        np.random.seed(3)
        sample = ClipTriplets(root, "test", **fixed, **settings)[0]
        pos, x = sample["pos"], sample["x"]
        assert x.shape == (POINTS, 6) and torch.equal(x[:, :3], pos)
        assert torch.allclose(x[:, 3:], pos / pos.norm(dim=1, keepdim=True), atol=1e-4)
        assert torch.allclose(pos.norm(dim=1).sort()[0], plain.norm(dim=1).sort()[0], atol=1e-5)
        moved = [not torch.allclose(pos[:, k].sort()[0], plain[:, k].sort()[0], atol=1e-2) for k in range(3)]
        assert any(moved) != (settings == {})              # each coordinate's values change under a rotation/mirror


def test_use_normals_without_normals_in_the_file_is_one_sentence(tmp_path):
    root = str(_normals_folder(tmp_path / "xyz", 3))
    with pytest.raises(BadInputError, match=r"points.npy' has no normals .*set dataset.common.use_normals to False"):
        ClipTriplets(root, "test", num_points=POINTS, use_normals=True)[0]


def test_training_draws_every_view_and_its_image(triplets):
    data = ClipTriplets(str(triplets), "train", num_points=32)
    np.random.seed(0)
    seen = set()
    for _ in range(30):
        sample = data[2]
        v = int(sample["view_index"])
        seen.add(v)
        colour = torch.tensor(_colour(_number(triplets, data.object_ids[2]), v) / 255.0, dtype=torch.float32)
        assert torch.allclose(sample["img"][:, 0, 0], colour)
    assert seen == set(range(VIEWS))
    fixed = ClipTriplets(str(triplets), "train", num_points=32, image_views=2)
    assert {int(fixed[0]["view_index"]) for _ in range(5)} == {2}


def test_views_limits_the_views_drawn(triplets):
    data = ClipTriplets(str(triplets), "train", num_points=32, views=1)
    assert data.num_views == 1 and {int(data[0]["view_index"]) for _ in range(10)} == {0}


def test_without_views_in_meta_the_first_objects_files_count_and_a_missing_view_is_named(triplets, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(triplets / "a_train_00", root / "a_train_00")
    (root / "test.txt").write_text("a_train_00 0\n")
    (root / "meta.json").write_text(json.dumps({"classes": CLASSES}))
    assert ClipTriplets(str(root), "test").num_views == VIEWS
    (root / "a_train_00" / "view_02.png").unlink()
    with pytest.raises(DataNotFoundError, match="view_02.png' is missing"):
        ClipTriplets(str(root), "test", num_points=32, views=VIEWS, image_views=2)[0]


def test_a_loader_batches_the_samples(triplets):
    batch = next(iter(DataLoader(ClipTriplets(str(triplets), "train", num_points=32), batch_size=4)))
    assert batch["pos"].shape == (4, 32, 3) and batch["img"].shape == (4, 3, SIZE, SIZE)
    assert batch["y"].dtype == torch.int64 and batch["index"].tolist() == [0, 1, 2, 3]


# --- the similarity store ----------------------------------------------------------------------------------------

EMBED = 5


def _embedding(object_id: str, view: int) -> np.ndarray:
    """A distinct unit vector per object and view."""
    rng = np.random.default_rng([sum(map(ord, object_id)), view])
    vector = rng.normal(size=EMBED)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def _write_store(root: Path, triplets: Path, views: int = VIEWS, leave_out: str = None) -> Path:
    """A store of every train.txt object (rows in reverse id order, so rows are not the file order)."""
    per_category = {name: [] for name in CLASSES}
    for line in (triplets / "train.txt").read_text().splitlines():
        object_id, label = line.split()
        if object_id != leave_out:
            per_category[CLASSES[int(label)]].append(object_id)
    per_category = {name: sorted(ids, reverse=True) for name, ids in per_category.items()}
    manifest = make_manifest({"kind": "test"}, views=views, categories=per_category, kinds=["i2i"])
    for name, ids in per_category.items():
        array = np.stack([[_embedding(o, v) for v in range(views)] for o in ids])
        write_category(str(root), "embeddings", name, ids, array,
                       file_fp=file_fingerprint(manifest, "embeddings", name, ids))
    write_manifest(str(root), manifest)
    return root


def test_store_gives_each_samples_view_embedding_and_similarity_row(triplets, tmp_path):
    store = _write_store(tmp_path / "store", triplets)
    data = ClipTriplets(str(triplets), "train", num_points=32, store=str(store), load_images=False)
    assert data.store_fingerprint == json.loads((store / "manifest.json").read_text())["fingerprint"]
    np.random.seed(0)
    for index in range(len(data)):
        sample = data[index]
        object_id, name = data.object_ids[index], CLASSES[int(data.labels[index])]
        assert "img" not in sample
        assert torch.allclose(sample["img_emb"], torch.from_numpy(_embedding(object_id, int(sample["view_index"]))))
        assert int(sample["sim_category"]) == CLASSES.index(name)
        with np.load(store / "embeddings" / f"{name}.npz") as stored:
            assert str(stored["ids"][int(sample["sim_row"])]) == object_id
    with_images = ClipTriplets(str(triplets), "val", num_points=32, store=str(store))[0]
    assert with_images["img"].shape == (3, SIZE, SIZE) and with_images["img_emb"].shape == (EMBED,)


def test_store_made_for_other_objects_or_fewer_views_is_refused(triplets, tmp_path):
    data = ClipTriplets(str(triplets), "train")
    missing = _write_store(tmp_path / "missing", triplets, leave_out=data.object_ids[0])
    with pytest.raises(BadInputError, match=f"'{data.object_ids[0]}'.*rerun"):
        ClipTriplets(str(triplets), "train", store=str(missing))
    fewer = _write_store(tmp_path / "fewer", triplets, views=2)
    with pytest.raises(ConfigError, match="2 views.*set dataset.common.views to at most 2"):
        ClipTriplets(str(triplets), "train", store=str(fewer))
    assert ClipTriplets(str(triplets), "train", store=str(fewer), views=2).num_views == 2
    with pytest.raises(DataNotFoundError, match="dataset.common.store"):
        ClipTriplets(str(triplets), "train", store=str(tmp_path / "nowhere"))


# --- settings ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("settings, message", [
    ({"rotation_axis": 3}, "rotation_axis is 3: set it to 0, 1 or 2"),
    ({"rotation_axis": "y"}, "rotation_axis is 'y'"),
    ({"sampling": "grid"}, "sampling is 'grid': set it to random or fps"),
    ({"augment": "yes"}, "augment is 'yes'"),
    ({"image_views": 3}, "image_views is 3 but the objects have 3 views"),
    ({"views": 4}, "views is 4 but the objects have 3 views"),
    ({"image_views": "first"}, "image_views is 'first'"),
    ({"load_images": False}, "load_images is False but no dataset.common.store"),
    ({"val_fraction": 1.0}, "val_fraction is 1.0"),
    ({"jitter_sigma": -0.1}, "jitter_sigma is -0.1"),
    ({"split": "validation"}, "Unknown ClipTriplets split 'validation'"),
    ({"num_points": 0}, "num_points is 0"),
    ({"num_points": POINTS + 1}, f"holds only {POINTS} points"),
])
def test_bad_settings_are_one_sentence(triplets, settings, message):
    settings = {"split": "test", **settings}
    with pytest.raises(ConfigError, match=message):
        ClipTriplets(str(triplets), **settings)[0]


def test_missing_folder_or_split_list_names_the_tools(tmp_path):
    with pytest.raises(DataNotFoundError, match="dataset.common.data_dir.*import_ulip_shapenet"):
        ClipTriplets(str(tmp_path / "absent"))
    with pytest.raises(DataNotFoundError, match="train.txt' is missing"):
        ClipTriplets(str(tmp_path))


def test_config_keys_are_checked_against_the_constructor():
    dataset = {"common": {"NAME": "ClipTriplets", "data_dir": "x", "store": "s", "image_views": 0},
               "train": {"split": "train", "jitter_sigma": 0.0}}
    assert find_unknown_keys(EasyConfig({"dataset": dataset})) == []
    dataset["common"]["jiter_sigma"] = 0.01
    (unknown,) = find_unknown_keys(EasyConfig({"dataset": dataset}))
    assert unknown.key == "jiter_sigma" and "jitter_sigma" in unknown.message(strict=True)
    del dataset["common"]["jiter_sigma"]
    dataset["common"]["rotation"] = "y"                   # the old key: rotation_axis now, as in RenderedViews
    (unknown,) = find_unknown_keys(EasyConfig({"dataset": dataset}))
    assert unknown.key == "rotation" and "rotation_axis" in unknown.message(strict=True)


def test_the_shapenet_dataset_common_block_builds_clip_triplets(triplets):
    common = yaml.safe_load((REPO / "cfgs" / "shapenet" / "default.yaml").read_text())["dataset"]["common"]
    assert {"rotation_axis", "sampling", "use_normals", "augment"} <= set(common)
    block = {**common, "NAME": "ClipTriplets"}
    assert find_unknown_keys(EasyConfig({"dataset": {"common": block, "train": {"split": "train"}}})) == []
    settings = {key: value for key, value in block.items() if key != "NAME"}
    data = ClipTriplets(**{**settings, "data_dir": str(triplets), "num_points": POINTS})
    assert (data.rotation_axis, data.sampling, data.use_normals, data.augment) == (1, "random", False, True)
    assert data[0]["pos"].shape == (POINTS, 3)
