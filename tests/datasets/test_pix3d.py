"""Pix3D on a fake layout written here: records, shape indices, seeded surface points, masks, CLIP-style crops."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from plugin.datasets import Pix3D
from plugin.errors import BadInputError, ConfigError, DataNotFoundError

FLAT = "v 0 0 0\nv 2 0 0\nv 2 1 0\nv 0 1 0\nf 1 2 3\nf 1 3 4\n"          # a 2 x 1 rectangle in the plane z = 0
CUBE = ("mtllib model.mtl\nusemtl wood\n"                                  # names a material file that is absent
        + "".join(f"v {x} {y} {z}\n" for x in (-1, 1) for y in (-1, 1) for z in (-1, 1))
        + "f 1 3 4 2\nf 5 6 8 7\nf 1 2 6 5\nf 3 7 8 4\nf 1 5 7 3\nf 2 4 8 6\n")


def _image(width: int, height: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _mask(width: int, height: int) -> np.ndarray:
    """The left half of the image is the object."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[:, :width // 2] = 255
    return mask


@pytest.fixture(scope="module")
def pix3d(tmp_path_factory) -> Path:
    """Three photographs: two of the flat model (one 8x8, one 12x8), one of the cube."""
    root = tmp_path_factory.mktemp("pix3d")
    for relative, text in (("model/table/flat/model.obj", FLAT), ("model/bed/cube/model.obj", CUBE)):
        (root / relative).parent.mkdir(parents=True)
        (root / relative).write_text(text)
    records = []
    for k, (category, model, width) in enumerate((("table", "flat", 8), ("bed", "cube", 8), ("table", "flat", 12))):
        img, mask = f"img/{category}/{k:04d}.png", f"mask/{category}/{k:04d}.png"
        for relative, pixels in ((img, _image(width, 8, k)), (mask, _mask(width, 8))):
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / relative)
        records.append({"img": img, "mask": mask, "model": f"model/{category}/{model}/model.obj",
                        "category": category, "img_size": [width, 8], "bbox": [0, 0, width // 2, 8]})
    (root / "pix3d.json").write_text(json.dumps(records))
    return root


def test_records_labels_and_shape_indices(pix3d):
    data = Pix3D(str(pix3d), num_points=64, image_size=8)
    assert len(data) == 3 and data.classes == ["bed", "table"]
    assert data.labels.tolist() == [1, 0, 1]
    assert data.models == ["model/bed/cube/model.obj", "model/table/flat/model.obj"] and data.num_shapes == 2
    assert data.shape_indices.tolist() == [1, 0, 1]          # records 0 and 2 show the same model
    sample = data[2]
    assert int(sample["shape_index"]) == 1 and int(sample["y"]) == 1 and int(sample["index"]) == 2
    assert torch.equal(sample["pos"], data[0]["pos"])         # one model, one point set


def test_surface_points_are_unit_sphere_on_the_mesh_and_seeded(pix3d):
    data = Pix3D(str(pix3d), num_points=512)
    flat = data[0]["pos"].double()
    assert flat.shape == (512, 3) and torch.equal(data[0]["x"], data[0]["pos"])
    assert float(flat.norm(dim=1).max()) == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(flat.mean(0), torch.zeros(3, dtype=torch.double), atol=1e-6)
    assert torch.allclose(flat[:, 2], torch.zeros(512, dtype=torch.double), atol=1e-7)   # on the plane z = 0
    extent = flat.max(0).values - flat.min(0).values
    assert float(extent[0] / extent[1]) == pytest.approx(2.0, rel=0.05)                   # fills the 2 x 1 rectangle
    cube = data[1]["pos"].double()
    corner = cube.abs().max(dim=1).values           # on the cube's surface: the largest |coordinate| is ~constant
    assert float(corner.max() - corner.min()) < 0.1
    assert torch.equal(Pix3D(str(pix3d), num_points=512, category="table")[0]["pos"], data[0]["pos"])
    assert not torch.equal(Pix3D(str(pix3d), num_points=512, seed=1)[0]["pos"], data[0]["pos"])


def test_background_kept_or_masked_black_or_white(pix3d):
    photo = torch.from_numpy(_image(8, 8, 0) / 255.0).permute(2, 0, 1).float()
    assert torch.allclose(Pix3D(str(pix3d), image_size=8)[0]["img"], photo, atol=1e-6)
    black = Pix3D(str(pix3d), image_size=8, background=False)[0]["img"]
    assert torch.allclose(black[:, :, :4], photo[:, :, :4], atol=1e-6) and float(black[:, :, 4:].abs().max()) == 0.0
    white = Pix3D(str(pix3d), image_size=8, background=False, mask_fill="white")[0]["img"]
    assert torch.allclose(white[:, :, :4], photo[:, :, :4], atol=1e-6) and float(white[:, :, 4:].min()) == 1.0


def test_images_are_resized_on_the_shorter_side_and_centre_cropped(pix3d):
    wide = torch.from_numpy(_image(12, 8, 2) / 255.0).permute(2, 0, 1).float()
    assert torch.allclose(Pix3D(str(pix3d), image_size=8)[2]["img"], wide[:, :, 2:10], atol=1e-6)
    small = Pix3D(str(pix3d), image_size=4)[2]["img"]
    assert small.shape == (3, 4, 4) and 0.0 <= float(small.min()) and float(small.max()) <= 1.0


def test_category_filter_and_unknown_category(pix3d):
    beds = Pix3D(str(pix3d), category="bed")
    assert len(beds) == 1 and beds.classes == ["bed", "table"] and beds.labels.tolist() == [0]
    assert beds.models == ["model/bed/cube/model.obj"] and beds.shape_indices.tolist() == [0]
    with pytest.raises(ConfigError, match="no category 'sofa'.*bed, table"):
        Pix3D(str(pix3d), category=["bed", "sofa"])


def test_missing_or_malformed_files_are_one_sentence(pix3d, tmp_path):
    with pytest.raises(DataNotFoundError, match="pix3d.json' does not exist: set dataset.common.data_dir"):
        Pix3D(str(tmp_path))
    (tmp_path / "pix3d.json").write_text(json.dumps([{"img": "a.png", "model": "m.obj", "category": "bed"}]))
    with pytest.raises(BadInputError, match="Record 0 .* has no 'mask'"):
        Pix3D(str(tmp_path))
    (tmp_path / "pix3d.json").write_text(json.dumps([{"img": "a.png", "mask": "b.png", "model": "m.obj",
                                                      "category": "bed"}]))
    with pytest.raises(DataNotFoundError, match="a.png' \\(img of a pix3d.json record\\) is missing"):
        Pix3D(str(tmp_path))
    Image.fromarray(_image(8, 8, 0)).save(tmp_path / "a.png")
    Image.fromarray(_mask(6, 8)).save(tmp_path / "b.png")
    (tmp_path / "m.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n")   # a degenerate face: no area
    data = Pix3D(str(tmp_path), background=False)
    with pytest.raises(BadInputError, match="Mask .* is 6x8 but its image is 8x8"):
        data.image(0)
    with pytest.raises(BadInputError, match="m.obj' has no surface"):
        data[0]
    with pytest.raises(ConfigError, match="mask_fill is 'grey'"):
        Pix3D(str(pix3d), mask_fill="grey")
