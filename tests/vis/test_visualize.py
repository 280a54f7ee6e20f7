"""tools/visualize.py: Pic@Point correspondence heatmaps and t-SNE/PCA plots of SVM features."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from plugin.engine import builders, load_config
from plugin.engine.batch import prepare_batch
from plugin.vis import correspondence_maps as maps
from plugin.vis import embedding_plots as plots
from plugin.render.cameras import project
from plugin.render.mapping import points_to_cells
from tests.engine.conftest import FIXTURES, REPO

from ..conftest import load_tool

CFG = str(REPO / "cfgs" / "shapenet" / "pic_at_point-dgcnn.yaml")
TINY = ["model.encoder_args.channels=8", "model.encoder_args.k=8", "model.encoder_args.embed_dim=32",
        "model.encoder_args.n_blocks=3", "model.embed_dim=32", "model.pose_dim=8",
        "model.image_backbone.name=resnet18", "model.image_backbone.weights=none",
        "model.image_backbone.image_size=128", "dataset.common.num_points=256"]
DPI = 40


@pytest.fixture(scope="module")
def visualize():
    """``tools/visualize.py``'s ``main(argv) -> exit status``."""
    return load_tool("visualize").main


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A cube-surface object rendered at 128 px (a 4 x 4 ResNet-18 grid) and a random Pic@Point checkpoint."""
    root = tmp_path_factory.mktemp("visualize")
    points = FIXTURES.tiny_shape(1, np.random.default_rng(0), 300).astype(np.float32)
    opts = {"image_size": 128, "radius_px": 1, "distance": 2.2, "fov": 60.0}
    load_tool("render_views").render_object((str(root / "object"), points, opts))
    torch.manual_seed(0)
    model = builders.build_model(load_config(CFG, TINY))
    torch.save({"model": model.state_dict()}, root / "ckpt.pth")
    return root


def _model_and_input(root, view: int):
    cfg = load_config(CFG, TINY)
    model = builders.build_model(cfg)
    model.load_state_dict(torch.load(root / "ckpt.pth", weights_only=True)["model"])
    model.eval()
    obj = maps.load_rendered_object(str(root / "object"), view)
    data = maps.model_input(obj, 256, False)
    return model, prepare_batch(data, torch.device("cpu"), 3)


def test_correspondence_command_writes_the_figure(visualize, rendered, tmp_path, capsys):
    out = tmp_path / "figs" / "heat.png"
    args = ["correspondence", "--cfg", CFG, "--load_path", str(rendered / "ckpt.pth"),
            "--object", str(rendered / "object"), "--view", "2", "--out", str(out), "--dpi", str(DPI), *TINY]
    assert visualize(args) == 0
    assert Image.open(out).size == (round(maps.FIGSIZE[0] * DPI), round(maps.FIGSIZE[1] * DPI))
    assert "positive cell" in capsys.readouterr().out


def test_similarity_map_equals_cosine_of_embed_and_positive_cell_is_the_projection(rendered):
    model, data = _model_and_input(rendered, view=2)
    result = maps.correspondence(model, data)
    with torch.no_grad():
        e = model.embed(data)
    k = result.region
    direct = F.normalize(e["local_3d"][0, :, k], dim=0) @ F.normalize(e["local_2d"][0], dim=0)
    assert result.grid_size == 4
    np.testing.assert_allclose(result.similarity.reshape(-1), direct.numpy(), atol=1e-6)
    center = data["pos"][:, k:k + 1]                          # DGCNN's regions are the input points
    cell, inside = points_to_cells(center, data["view"], data["proj"], 4)
    assert bool(inside) and result.cell == int(cell) == int(e["cells"][0, k])
    uv = project(data["pos"], data["view"], data["proj"])[0][0]
    np.testing.assert_allclose(result.center_uv, uv[k].numpy(), atol=1e-6)
    # the default region is the inside one nearest the image centre
    distance = (uv - 0.5).norm(dim=-1).masked_fill(~e["inside"][0], float("inf"))
    assert k == int(distance.argmin())
    chosen = maps.correspondence(model, data, region=7)
    assert chosen.region == 7 and np.allclose(chosen.similarity.reshape(-1),
                                              (e["local_3d"][0, :, 7] @ e["local_2d"][0]).numpy(), atol=1e-5)


@pytest.mark.parametrize("change, needle", [
    ({"--load_path": "missing.pth"}, "--load_path"),
    ({"--object": "EMPTY"}, "tools/render_views.py"),
    ({"--view": "20"}, "--view between 0 and 19"),
    ({"--point": "100000"}, "--point 100000 does not exist"),
])
def test_correspondence_errors_are_one_sentence(visualize, rendered, tmp_path, capsys, change, needle):
    (tmp_path / "EMPTY").mkdir()
    options = {"--cfg": CFG, "--load_path": str(rendered / "ckpt.pth"), "--object": str(rendered / "object"),
               "--out": str(tmp_path / "heat.png")}
    options.update({k: str(tmp_path / v) if v in ("missing.pth", "EMPTY") else v for k, v in change.items()})
    assert visualize(["correspondence", *[s for kv in options.items() for s in kv], *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and "Traceback" not in err
    assert not (tmp_path / "heat.png").exists()


def _clusters(rng: np.random.Generator, per_class: int = 20, dims: int = 64):
    centres = rng.normal(size=(3, dims)) * 5
    labels = np.repeat(np.arange(3), per_class)
    return (centres[labels] + rng.normal(size=(len(labels), dims))).astype(np.float32), labels


def _nearest_centroid_accuracy(coords: np.ndarray, labels: np.ndarray) -> float:
    centroids = np.stack([coords[labels == c].mean(0) for c in np.unique(labels)])
    predicted = np.linalg.norm(coords[:, None] - centroids[None], axis=-1).argmin(1)
    return float((predicted == labels).mean())


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embedding_keeps_clusters_separable(method):
    features, labels = _clusters(np.random.default_rng(0))
    coords = plots.embed_2d(features, method)
    assert coords.shape == (60, 2) and _nearest_centroid_accuracy(coords, labels) == 1.0


def test_features_command_writes_one_panel_per_file(visualize, tmp_path, capsys):
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        np.savez(tmp_path / f"features_{split}.npz", **dict(zip(("features", "labels"), _clusters(rng))))
    (tmp_path / "names.txt").write_text("chair\ntable\nlamp\n")
    out = tmp_path / "emb.png"
    args = ["features", "--features", str(tmp_path / "features_train.npz"), str(tmp_path / "features_test.npz"),
            "--method", "pca", "--classes", str(tmp_path / "names.txt"), "--out", str(out), "--dpi", str(DPI)]
    assert visualize(args) == 0
    width, height = Image.open(out).size
    assert height == round(plots.PANEL_INCHES * DPI)
    assert width == round((2 * plots.PANEL_INCHES + plots.LEGEND_INCHES) * DPI)
    assert "2 panel(s) of PCA" in capsys.readouterr().out


def test_features_errors(visualize, tmp_path, capsys):
    missing = tmp_path / "features_test.npz"
    assert visualize(["features", "--features", str(missing), "--out", str(tmp_path / "emb.png")]) == 2
    assert f"'{missing}' does not exist" in capsys.readouterr().err
    np.savez(missing, features=np.random.rand(5, 4), labels=np.array([0, 1, 2, 3, 4]))
    (tmp_path / "names.txt").write_text("a\nb\n")
    args = ["features", "--features", str(missing), "--method", "pca", "--classes", str(tmp_path / "names.txt"),
            "--out", str(tmp_path / "emb.png")]
    assert visualize(args) == 2
    assert f"Label 4 of '{missing}' has no name" in capsys.readouterr().err
    assert not (tmp_path / "emb.png").exists()


def test_class_names_from_text_or_meta_json(tmp_path):
    (tmp_path / "names.txt").write_text("chair\n\ntable\n")
    (tmp_path / "meta.json").write_text('{"classes": ["chair", "table"], "views": 20}')
    assert plots.read_class_names(str(tmp_path / "names.txt")) == ["chair", "table"]
    assert plots.read_class_names(str(tmp_path / "meta.json")) == ["chair", "table"]


def test_model_input_matches_the_dataset_without_augmentation(rendered):
    """Images in [0, 1] (the model normalises them), fixed points as RenderedViews gives them, view 0."""
    from plugin.datasets import RenderedViews

    root = rendered
    (root / "test.txt").write_text("object 0\n")
    obj = maps.load_rendered_object(str(root / "object"), 0)
    for sampling in ("random", "fps"):
        sample = RenderedViews(str(root), "test", num_points=64, sampling=sampling)[0]
        data = maps.model_input(obj, 64, False, sampling)
        for key in ("pos", "x", "heights", "img", "view", "proj"):
            torch.testing.assert_close(data[key][0], sample[key], atol=0, rtol=0, msg=key)
    assert 0.0 <= float(data["img"].min()) and float(data["img"].max()) <= 1.0
