"""Issue 9 §5: tools/render_views.py and tools/make_shapes.py answer bad options, mixed settings and unwritable
outputs with one sentence (exit status 2); ``--view-set`` picks the cameras and is recorded in meta.json."""
import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ..conftest import load_tool


@pytest.fixture(scope="module")
def render_views():
    return load_tool("render_views")


@pytest.fixture(scope="module")
def make_shapes():
    return load_tool("make_shapes").main


@pytest.fixture(scope="module")
def shapes(tmp_path_factory, make_shapes) -> Path:
    """The procedural shapes, one train and one test shape per class, 64 points each."""
    out = tmp_path_factory.mktemp("shapes") / "shapes"
    assert make_shapes(["--out", str(out), "--per-class-train", "1", "--per-class-test", "1", "--points", "64"]) == 0
    return out


def _argv(shapes: Path, out: Path, *extra: str):
    return ["--source", "modelnet40_normal_resampled", "--data-dir", str(shapes), "--out", str(out),
            "--splits", "train", "--limit", "2", "--num-points", "64", "--image-size", "16", "--workers", "1", *extra]


def _with(argv, option: str, value: str):
    """``argv`` with ``option`` set to ``value`` (replaced when present, else appended)."""
    if option in argv:
        return [*argv[:argv.index(option) + 1], value, *argv[argv.index(option) + 2:]]
    return [*argv, option, value]


def _one_sentence(capsys) -> str:
    """The one line of stderr besides the progress bars, checked to be an error sentence."""
    lines = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith(("render:", "shapes:"))]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in lines[0]
    return lines[0]


@pytest.mark.parametrize("option, value, message", [
    ("--image-size", "0", "--image-size is 0: pass an integer >= 1."),
    ("--workers", "0", "--workers is 0: pass an integer >= 1."),
    ("--num-points", "-5", "--num-points is -5: pass an integer >= 1."),
    ("--radius-px", "-1", "--radius-px is -1: pass an integer >= 0."),
    ("--limit", "0", "--limit is 0: pass an integer >= 1."),
    ("--distance", "0", "--distance is 0.0: pass a camera distance > 0"),
    ("--fov", "180", "--fov is 180.0: pass a field of view between 0 and 180 degrees"),
])
def test_non_positive_options_are_one_sentence(render_views, shapes, tmp_path, capsys, option, value, message):
    assert render_views.main(_with(_argv(shapes, tmp_path / "views"), option, value)) == 2
    assert message in _one_sentence(capsys)
    assert not (tmp_path / "views").exists()


@pytest.mark.parametrize("option, value, recorded", [
    ("--image-size", "24", "--image-size 16, not 24"),
    ("--radius-px", "2", "--radius-px 1, not 2"),
    ("--num-points", "32", "--num-points 64, not 32"),
    ("--fov", "45", "--fov 60.0, not 45.0"),
    ("--distance", "3", "--distance 2.2, not 3.0"),
    ("--view-set", "orthogonal_corner10", "--view-set dodecahedron20, not orthogonal_corner10"),
])
def test_other_settings_into_an_existing_out_are_refused(render_views, shapes, tmp_path, capsys, option, value,
                                                         recorded):
    out = tmp_path / "views"
    assert render_views.main(_argv(shapes, out)) == 0
    meta = (out / "meta.json").read_text()
    assert render_views.main(_with(_argv(shapes, out), option, value)) == 2
    err = _one_sentence(capsys)
    assert recorded in err and "--overwrite" in err
    assert (out / "meta.json").read_text() == meta                   # the old render's settings stay


def test_overwrite_re_renders_every_object_with_the_new_settings(render_views, shapes, tmp_path):
    out = tmp_path / "views"
    assert render_views.main(_argv(shapes, out)) == 0
    assert len(list((out / "train_00000").glob("view_*.png"))) == 20
    assert render_views.main(_argv(shapes, out, "--image-size", "24", "--view-set", "orthogonal_corner10",
                                   "--overwrite")) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["image_size"], meta["view_set"], meta["views"]) == (24, "orthogonal_corner10", 10)
    for obj in ("train_00000", "train_00001"):
        views = sorted((out / obj).glob("view_*.png"))
        assert len(views) == 10                                       # the 10 stale dodecahedron views are gone
        assert len(np.load(out / obj / "cameras.npz")["view"]) == 10
        assert all(Image.open(v).size == (24, 24) for v in views)


def test_orthogonal_corner10_uses_clip2points_cameras(render_views, shapes, tmp_path):
    from plugin.render.view_sets import orthogonal_and_corner_views

    out = tmp_path / "views"
    assert render_views.main(_argv(shapes, out, "--view-set", "orthogonal_corner10")) == 0
    view, proj = orthogonal_and_corner_views()
    cameras = np.load(out / "train_00000" / "cameras.npz")
    np.testing.assert_array_equal(cameras["view"], view.numpy())
    np.testing.assert_array_equal(cameras["proj"], proj.numpy())


def test_renders_of_the_old_format_resume(render_views, shapes, tmp_path, capsys):
    out = tmp_path / "views"
    assert render_views.main(_argv(shapes, out)) == 0
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps(dict(meta, view_set="dodecahedron")))   # before --view-set
    assert render_views.main(_argv(shapes, out)) == 0
    assert "0 objects rendered" in capsys.readouterr().out


def _full_disk(monkeypatch):
    """The point files of both tools fail as on a full disk."""
    from plugin.datasets import procedural_shapes

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "save", full)                           # render_views: points.npy
    monkeypatch.setattr(procedural_shapes, "save_text", full)      # make_shapes: every file


@pytest.mark.parametrize("case", ["regular_file", "read_only", "full_disk"])
def test_an_unwritable_out_is_one_sentence(render_views, make_shapes, shapes, tmp_path, capsys, monkeypatch, case):
    if case == "read_only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    target = tmp_path / "out"
    if case == "regular_file":
        target.write_text("a file, not a folder")
    elif case == "read_only":
        tmp_path.chmod(0o555)
    else:
        _full_disk(monkeypatch)
    try:
        assert render_views.main(_argv(shapes, target / "views" if case == "read_only" else target)) == 2
        render_err = _one_sentence(capsys)
        assert make_shapes(["--out", str(target / "shapes" if case == "read_only" else target),
                            "--per-class-train", "1", "--per-class-test", "1", "--points", "64"]) == 2
        shapes_err = _one_sentence(capsys)
    finally:
        tmp_path.chmod(0o755)
    for err in (render_err, shapes_err):
        assert "choose a writable --out" in err and "bytes free there" in err and str(target) in err
