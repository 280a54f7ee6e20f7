"""tools/import_ulip_shapenet.py on a fake ULIP layout: links the right renders, writes unit-sphere points and the
split lists that ClipTriplets reads, resumes, refuses mixed settings, and answers bad input with one sentence."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from plugin.datasets import ClipTriplets
from plugin.datasets.rendered_views import center_and_scale

from ..conftest import load_tool
from ..datasets.test_ulip_shapenet import OBJECTS, render_colour, write_ulip_layout


@pytest.fixture(scope="module")
def tool():
    return load_tool("import_ulip_shapenet")


@pytest.fixture
def ulip(tmp_path) -> Path:
    return write_ulip_layout(tmp_path / "shapenet-55")


def _one_sentence(capsys) -> str:
    """The one line of stderr besides the progress bars, checked to be an error sentence."""
    lines = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith("import ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in lines[0], lines
    return lines[0]


def test_import_links_every_view_and_writes_unit_sphere_points(tool, ulip, tmp_path, capsys):
    out = tmp_path / "out"
    assert tool.main(["--data-dir", str(ulip), "--out", str(out)]) == 0
    assert "import train" in capsys.readouterr().err                       # the progress bar
    meta = json.loads((out / "meta.json").read_text())
    assert meta["classes"] == ["airplane", "table"] and meta["synsets"] == ["02691156", "04379243"]
    assert meta["views"] == 30 and meta["view_angles_deg"] == list(range(0, 360, 12)) and meta["image_kind"] == "rgb"
    assert (out / "train.txt").read_text() == "04379243-t0 1\n02691156-a0 0\n04379243-t1 1\n"
    assert (out / "test.txt").read_text() == "02691156-a1 0\n"
    folder = out / "04379243-t1"
    assert sorted(p.name for p in folder.glob("view_*.png")) == [f"view_{k:02d}.png" for k in range(30)]
    assert os.readlink(folder / "view_07.png") == str((ulip / "rendered_images" / "04379243-t1" /
                                                        "04379243-t1_r_084.png").resolve())
    stored = np.load(ulip / "shapenet_pc" / "04379243-t1.npy")
    assert np.allclose(np.load(folder / "points.npy"), center_and_scale(stored)[0], atol=1e-6)


def test_clip_triplets_reads_the_imported_folder(tool, ulip, tmp_path):
    out = tmp_path / "out"
    assert tool.main(["--data-dir", str(ulip), "--out", str(out), "--views", "10", "--kind", "depth"]) == 0
    assert os.readlink(out / "02691156-a0" / "view_01.png").endswith("02691156-a0_r_036_depth0001.png")
    data = ClipTriplets(str(out), "test", num_points=32)
    assert data.num_views == 10 and data.classes == ["airplane", "table"]
    sample = ClipTriplets(str(out), "test", num_points=32, image_views=3)[0]
    colour = torch.tensor(render_colour("02691156-a1", 108, "depth") / 255.0, dtype=torch.float32)
    assert torch.allclose(sample["img"][:, 0, 0], colour) and int(sample["y"]) == 0
    assert float(sample["pos"].norm(dim=1).max()) == pytest.approx(1.0, abs=1e-6)


def test_num_points_farthest_point_samples_each_cloud(tool, ulip, tmp_path):
    out = tmp_path / "out"
    assert tool.main(["--data-dir", str(ulip), "--out", str(out), "--num-points", "20", "--splits", "test"]) == 0
    assert np.load(out / "02691156-a1" / "points.npy").shape == (20, 3)
    assert not (out / "train.txt").exists() and json.loads((out / "meta.json").read_text())["num_points"] == 20


def test_rerun_resumes_and_refuses_other_settings(tool, ulip, tmp_path, capsys):
    out = tmp_path / "out"
    assert tool.main(["--data-dir", str(ulip), "--out", str(out)]) == 0
    (out / "02691156-a0" / "points.npy").unlink()                          # as if killed before this object
    (out / "02691156-a0" / "view_03.png").unlink()
    capsys.readouterr()
    assert tool.main(["--data-dir", str(ulip), "--out", str(out)]) == 0
    assert "1 objects imported" in capsys.readouterr().out
    assert (out / "02691156-a0" / "points.npy").is_file() and (out / "02691156-a0" / "view_03.png").is_symlink()
    assert tool.main(["--data-dir", str(ulip), "--out", str(out), "--views", "12"]) == 2
    assert "--views 30, not 12" in _one_sentence(capsys)
    assert tool.main(["--data-dir", str(ulip), "--out", str(out), "--views", "12", "--overwrite"]) == 0
    assert f"{sum(map(len, OBJECTS.values()))} objects imported" in capsys.readouterr().out
    assert json.loads((out / "meta.json").read_text())["views"] == 12
    assert sorted(p.name for p in (out / "02691156-a0").glob("view_*.png")) == [f"view_{k:02d}.png" for k in range(12)]


def test_incomplete_objects_stop_the_import_or_are_left_out(tool, ulip, tmp_path, capsys):
    (ulip / "rendered_images" / "04379243-t0" / "04379243-t0_r_120.png").unlink()
    np.save(ulip / "shapenet_pc" / "02691156-a1.npy", np.full((8, 3), np.inf, dtype=np.float32))
    out = tmp_path / "out"
    assert tool.main(["--data-dir", str(ulip), "--out", str(out)]) == 2
    assert "04379243-t0_r_120.png is missing" in _one_sentence(capsys)
    assert tool.main(["--data-dir", str(ulip), "--out", str(out), "--skip-incomplete"]) == 0
    assert "2 left out" in capsys.readouterr().out
    assert (out / "skipped.txt").read_text().split() == ["04379243-t0", "02691156-a1"]
    assert (out / "train.txt").read_text() == "02691156-a0 0\n04379243-t1 1\n"
    assert (out / "test.txt").read_text() == ""


@pytest.mark.parametrize("extra, message", [
    (["--views", "31"], "--views is 31: pass 1 to 30"),
    (["--num-points", "0"], "--num-points is 0: pass an integer >= 1."),
    (["--images", "/nonexistent/renders"], "No render folder at /nonexistent/renders"),
])
def test_bad_options_are_one_sentence(tool, ulip, tmp_path, capsys, extra, message):
    assert tool.main(["--data-dir", str(ulip), "--out", str(tmp_path / "out"), *extra]) == 2
    assert message in _one_sentence(capsys)


def test_missing_source_or_unwritable_out_is_one_sentence(tool, ulip, tmp_path, capsys):
    assert tool.main(["--data-dir", str(tmp_path / "absent"), "--out", str(tmp_path / "out")]) == 2
    assert "shapenet_pc does not exist" in _one_sentence(capsys)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert tool.main(["--data-dir", str(ulip), "--out", str(blocker / "out")]) == 2
    assert "choose a writable --out" in _one_sentence(capsys)
