"""ULIP's ShapeNet-55 triplet layout on a fake folder written here: view names and angles, taxonomy names, labels,
nested and flat render folders, validated clouds. :func:`write_ulip_layout` also serves the importer's tests."""
import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from PIL import Image

from plugin.datasets.rendered_views import farthest_points
from plugin.datasets.ulip_shapenet import UlipShapeNet, read_taxonomy, view_angles, view_file_name
from plugin.errors import BadInputError, DataNotFoundError

POINTS = 128
SYNSETS = {"04379243": "table,board", "02691156": "airplane,aeroplane,plane"}   # 04379243 sorts after 02691156
OBJECTS = {"train": ["04379243-t0", "02691156-a0", "04379243-t1"], "test": ["02691156-a1"]}


def render_colour(object_id: str, angle: int, kind: str) -> np.ndarray:
    """The constant uint8 RGB colour of one fake render: names the object, the view and the render type."""
    return np.array([sum(map(ord, object_id)) % 256, angle % 256 // 2 * 2, 255 if kind == "depth" else 0],
                    dtype=np.uint8)


def write_ulip_layout(root: Path, flat: bool = False, objects: Dict[str, List[str]] = None) -> Path:
    """A fake ULIP ``shapenet-55`` folder: taxonomy (with a child synset not in the lists), split lists with
    ``.npy`` names, (POINTS, 3) clouds off-centre, and 4x4 RGB and depth renders of the 30 views.

    Args:
        root: the folder to write.
        flat: renders directly in ``only_rgb_depth_images/`` instead of per-object ``rendered_images/<id>/``.
        objects: split -> object ids (default :data:`OBJECTS`).
    """
    objects = objects or OBJECTS
    rng = np.random.default_rng(0)
    (root / "shapenet_pc").mkdir(parents=True)
    taxonomy = [{"synsetId": s, "name": n, "children": [], "numInstances": 1} for s, n in SYNSETS.items()]
    taxonomy.append({"synsetId": "04256520", "name": "sofa,couch,lounge", "children": [], "numInstances": 0})
    (root / "taxonomy.json").write_text(json.dumps(taxonomy))
    for split, ids in objects.items():
        (root / f"{split}.txt").write_text("".join(f"{o}.npy\n" for o in ids))
        for object_id in ids:
            cloud = rng.normal(size=(POINTS, 3)) * np.array([2.0, 1.0, 0.5]) + 3.0
            np.save(root / "shapenet_pc" / f"{object_id}.npy", cloud.astype(np.float32))
            folder = root / "only_rgb_depth_images" if flat else root / "rendered_images" / object_id
            folder.mkdir(parents=True, exist_ok=True)
            for angle in range(0, 360, 12):
                for kind in ("rgb", "depth"):
                    pixels = np.broadcast_to(render_colour(object_id, angle, kind), (4, 4, 3)).copy()
                    Image.fromarray(pixels).save(folder / view_file_name(object_id, angle, kind))
    return root


@pytest.fixture(scope="module")
def ulip(tmp_path_factory) -> Path:
    return write_ulip_layout(tmp_path_factory.mktemp("ulip") / "shapenet-55")


def test_view_angles_and_file_names_follow_ulip():
    assert view_angles() == list(range(0, 360, 12)) and len(view_angles()) == 30
    assert view_angles(10) == list(range(0, 360, 36))
    twelve = view_angles(12)
    assert len(twelve) == 12 and twelve[0] == 0 and all(a % 12 == 0 for a in twelve) and twelve == sorted(set(twelve))
    assert max(np.diff(twelve)) - min(np.diff(twelve)) == 12          # as even as 12 of 30 views allow
    with pytest.raises(BadInputError, match="30 views per object, not 31"):
        view_angles(31)
    assert view_file_name("02691156-1a04", 0) == "02691156-1a04_r_000.png"
    assert view_file_name("02691156-1a04", 348, "depth") == "02691156-1a04_r_348_depth0001.png"


def test_taxonomy_gives_the_first_name_of_each_synset(ulip, tmp_path):
    assert read_taxonomy(ulip / "taxonomy.json") == {"04379243": "table", "02691156": "airplane", "04256520": "sofa"}
    (tmp_path / "bad.json").write_text(json.dumps({"04379243": "table"}))
    with pytest.raises(BadInputError, match="not a ShapeNet taxonomy"):
        read_taxonomy(tmp_path / "bad.json")


def test_objects_labels_and_class_names(ulip, tmp_path):
    source = UlipShapeNet(str(ulip))
    assert source.synsets == ["02691156", "04379243"] and source.classes == ["airplane", "table"]
    assert source.objects("train") == [("04379243-t0", 1), ("02691156-a0", 0), ("04379243-t1", 1)]
    assert source.objects("test") == [("02691156-a1", 0)]
    assert source.images == ulip / "rendered_images"
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"02691156": "plane"}))
    assert UlipShapeNet(str(ulip), synset_names=str(names)).classes == ["plane", "04379243"]   # unnamed: the id


def test_view_paths_nested_or_flat(ulip, tmp_path):
    nested = UlipShapeNet(str(ulip)).view_path("02691156-a0", 24, "depth")
    assert nested == ulip / "rendered_images" / "02691156-a0" / "02691156-a0_r_024_depth0001.png" and nested.is_file()
    flat_root = write_ulip_layout(tmp_path / "flat", flat=True)
    flat = UlipShapeNet(str(flat_root)).view_path("02691156-a0", 24)
    assert flat == flat_root / "only_rgb_depth_images" / "02691156-a0_r_024.png" and flat.is_file()
    pixels = np.asarray(Image.open(flat))[0, 0]
    assert np.array_equal(pixels, render_colour("02691156-a0", 24, "rgb"))


def test_points_are_validated_and_farthest_point_sampled(ulip, tmp_path):
    source = UlipShapeNet(str(ulip))
    stored = np.load(ulip / "shapenet_pc" / "02691156-a0.npy")
    assert np.array_equal(source.points("02691156-a0"), stored)
    assert np.array_equal(source.points("02691156-a0", 16), stored[farthest_points(stored, 16)])
    assert np.array_equal(source.points("02691156-a0", 1000), stored)            # fewer stored: all of them
    broken = write_ulip_layout(tmp_path / "broken")
    np.save(broken / "shapenet_pc" / "02691156-a0.npy", np.full((4, 3), np.nan, dtype=np.float32))
    np.save(broken / "shapenet_pc" / "02691156-a1.npy", np.zeros(5, dtype=np.float32))
    (broken / "shapenet_pc" / "04379243-t0.npy").unlink()
    source = UlipShapeNet(str(broken))
    with pytest.raises(BadInputError, match="NaN or infinite"):
        source.points("02691156-a0")
    with pytest.raises(BadInputError, match=r"shape \(5,\), not \(N, 3\)"):
        source.points("02691156-a1")
    with pytest.raises(DataNotFoundError, match="04379243-t0.npy is missing"):
        source.points("04379243-t0")


def test_missing_folders_are_one_sentence(tmp_path):
    with pytest.raises(DataNotFoundError, match="shapenet_pc"):
        UlipShapeNet(str(tmp_path))
    root = write_ulip_layout(tmp_path / "no_renders")
    for path in sorted((root / "rendered_images").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (root / "rendered_images").rmdir()
    with pytest.raises(DataNotFoundError, match="No render folder .*rendered_images or .*only_rgb_depth_images"):
        UlipShapeNet(str(root))
