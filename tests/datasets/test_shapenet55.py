"""ShapeNet-55 ``.npy`` source: split lists, labels, FPS loading and ``tools/render_views.py --source shapenet55``."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from plugin.datasets.shapenet55 import load_shapenet55_cloud, read_shapenet55_split
from plugin.errors import DataNotFoundError

from ..conftest import load_tool

SYNSETS = ["04379243", "02691156", "03001627"]  # table, airplane, chair: sorted -> airplane, chair, table


@pytest.fixture()
def shapenet55(tmp_path) -> Path:
    """3 synsets, 2 train + 1 test objects each, 600 random points per object, lists in ShapeNet-55/."""
    root = tmp_path / "ShapeNet55-34"
    (root / "shapenet_pc").mkdir(parents=True)
    (root / "ShapeNet-55").mkdir()
    rng = np.random.default_rng(0)
    lists = {"train": [], "test": []}
    for synset in SYNSETS:
        for i, split in enumerate(["train", "train", "test"]):
            name = f"{synset}-model{i}.npy"
            np.save(root / "shapenet_pc" / name, rng.normal(size=(600, 3)).astype(np.float32))
            lists[split].append(name)
    for split, names in lists.items():
        (root / "ShapeNet-55" / f"{split}.txt").write_text("\n".join(names) + "\n")
    (tmp_path / "names.json").write_text(json.dumps({"04379243": "table", "02691156": "airplane"}))
    return root


def test_labels_index_sorted_synsets_shared_by_both_splits(shapenet55, tmp_path):
    paths, labels, classes, ids = read_shapenet55_split(str(shapenet55), "test", str(tmp_path / "names.json"))
    assert classes == ["airplane", "03001627", "table"]   # unnamed synsets keep their id
    assert ids == [f"{s}-model2" for s in SYNSETS] and labels.tolist() == [2, 0, 1]
    assert all(p.is_file() for p in paths)


def test_cloud_is_farthest_point_sampled(shapenet55):
    path = shapenet55 / "shapenet_pc" / f"{SYNSETS[0]}-model0.npy"
    full = np.load(path)
    points = load_shapenet55_cloud(path, 64)
    assert points.shape == (64, 3) and points.dtype == np.float32
    np.testing.assert_array_equal(points[0], full[0])                           # FPS starts at point 0
    d = np.linalg.norm(full[:, None] - points[None, :1], axis=-1)[:, 0]
    np.testing.assert_array_equal(points[1], full[d.argmax()])                 # then the farthest point
    assert load_shapenet55_cloud(path, 1000).shape == (600, 3)                 # fewer points: all kept


def test_missing_layout_names_the_folder(tmp_path):
    with pytest.raises(DataNotFoundError, match="shapenet_pc"):
        read_shapenet55_split(str(tmp_path), "train")
    (tmp_path / "shapenet_pc").mkdir()
    with pytest.raises(DataNotFoundError, match="split list 'train.txt'"):
        read_shapenet55_split(str(tmp_path), "train")


def test_render_views_writes_the_pretraining_format(shapenet55, tmp_path, capsys):
    tool = load_tool("render_views")
    out = tmp_path / "views"
    argv = ["--source", "shapenet55", "--data-dir", str(shapenet55), "--out", str(out), "--num-points", "128",
            "--image-size", "32", "--workers", "1", "--synset-names", str(tmp_path / "names.json")]
    assert tool.main(argv) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["classes"] == ["airplane", "03001627", "table"] and meta["source"] == "shapenet55"
    train = [line.split() for line in (out / "train.txt").read_text().splitlines()]
    assert len(train) == 6 and train[0] == [f"{SYNSETS[0]}-model0", "2"]
    folder = out / train[0][0]
    points = np.load(folder / "points.npy")
    assert points.shape == (128, 3) and np.linalg.norm(points, axis=1).max() == pytest.approx(1.0, abs=1e-5)
    assert len(list(folder.glob("view_*.png"))) == 20 and np.load(folder / "cameras.npz")["view"].shape == (20, 4, 4)
    capsys.readouterr()
    assert tool.main(argv) == 0 and "0 objects rendered" in capsys.readouterr().out      # resumable: all skipped

    from plugin.datasets import RenderedViews
    sample = RenderedViews(str(out), "test", num_points=128)[0]
    assert sample["img"].shape == (3, 32, 32) and torch.is_tensor(sample["view"])
