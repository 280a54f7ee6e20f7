"""``mode=retrieval`` end to end through ``tools/main.py`` with a toy pretext model and a toy dataset whose
retrieval outcome is known by hand; the refusals (a model without ``supports_retrieval``, an unknown key); and
CLIPAlign with a tiny random CLIP on a rendered-views triplet folder, against its own embeddings."""
import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
import yaml
from openpoints.dataset.build import DATASETS
from openpoints.models.build import MODELS
from openpoints.utils import EasyConfig
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from plugin.eval import batch_gallery, cross_modal_retrieval
from plugin.io import save_torch
from plugin.models.base import PretextModel
from plugin.vis.retrieval_plots import cumulative_match
from tests.conftest import one_sentence

from .conftest import REPO

CODE = 8  # the toy's feature size: the points' x coordinates, and the first image row


@DATASETS.register_module(force=True)
class ToyRetrievalViews(Dataset):
    """``objects`` objects seen in ``views`` images each; object o's cloud has x coordinates e_o, its images a
    first row e_o (e_o: one-hot in 8 dimensions), except the images of object 0, which show e_1; label o % 2.

    Args:
        objects: the number of objects (at most 8).
        views: images per object; with more than one, samples give ``shape_index`` (as Pix3D does).
        split, transform: what OpenPoints' builder passes; unused.
    """

    def __init__(self, objects: int = 6, views: int = 1, split: str = "test", transform=None):
        self.objects, self.views = objects, views
        self.classes = ["even", "odd"]

    def __len__(self) -> int:
        return self.objects * self.views

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        obj = index // self.views
        pos = torch.zeros(CODE, 3)
        pos[obj, 0] = 1.0
        img = torch.zeros(3, 4, CODE)
        img[0, 0, 1 if obj == 0 else obj] = 1.0
        sample = {"pos": pos, "x": pos.clone(), "img": img, "y": torch.tensor(obj % 2), "index": torch.tensor(index)}
        if self.views > 1:
            sample["shape_index"] = torch.tensor(obj)
        return sample


@MODELS.register_module(force=True)
class ToyRetrievalModel(PretextModel):
    """encode_3d: the points' x coordinates; encode_image: the first row of the red channel (both L2-normalised).

    Records the clouds it embeds and the checkpoints it loads in class attributes, for the tests.
    """

    supports_zero_shot = True
    supports_retrieval = True
    clouds: List[int] = []
    loaded: List[str] = []

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, batch):
        return self.gain.sum(), {"loss": 0.0}

    def export_state(self):
        return {"encoder": self.state_dict()}

    def load_export(self, state, path, key="pretrained_path"):
        self.load_state_dict(state["encoder"])
        ToyRetrievalModel.loaded.append(path)

    def encode_3d(self, batch):
        ToyRetrievalModel.clouds.append(len(batch["pos"]))
        return nn.functional.normalize(self.gain * batch["pos"][:, :, 0], dim=1)

    def encode_text(self, class_names):
        return torch.eye(len(class_names), CODE)

    def encode_image(self, batch):
        return nn.functional.normalize(batch["img"][:, 0, 0, :], dim=1)


@MODELS.register_module(force=True)
class ToyZeroShotOnly(ToyRetrievalModel):
    """A zero-shot model without an image encoder."""

    supports_retrieval = False


@pytest.fixture
def toy_cfg(tmp_path) -> Path:
    """A retrieval experiment file under a copy of cfgs/default.yaml."""
    cfgs = tmp_path / "cfgs"
    (cfgs / "toy").mkdir(parents=True)
    (cfgs / "default.yaml").write_text((REPO / "cfgs" / "default.yaml").read_text())
    exp = cfgs / "toy" / "retrieval.yaml"
    exp.write_text("mode: retrieval\ndevice: cpu\nval_batch_size: 5\nmodel:\n  NAME: ToyRetrievalModel\n"
                   "dataset:\n  common:\n    NAME: ToyRetrievalViews\n")
    return exp


def run(main, cfg: Path, root: Path, *overrides: str) -> dict:
    ToyRetrievalModel.clouds.clear()
    assert main(["--cfg", str(cfg), f"root_dir={root}", *overrides]) == 0
    (folder,) = (root / "toy").iterdir()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert (folder / "retrieval_test.png").stat().st_size > 0
    with np.load(folder / "retrieval_test.npz") as ranks:  # the curves' k = 1 and 5 are the figures
        for direction in ("i2s", "s2i"):
            curve = cumulative_match(ranks[f"{direction}_rank"])
            assert len(ranks[f"{direction}_rank"]) == metrics[f"queries_{direction}"]
            assert curve[0] == pytest.approx(metrics[f"{direction}_top1"])
            assert curve[min(4, len(curve) - 1)] == pytest.approx(metrics[f"{direction}_top5"])
    return metrics


def test_figures_equal_the_hand_computed_ranks(toy_cfg, tmp_path, main):
    metrics = run(main, toy_cfg, tmp_path / "log")
    # image 0 shows e_1: its shape 1 scores 1, its own shape ties with 4 others at 0 and ranks last (6th);
    # shape 0 ties with every image at 0 (rank 6); shape 1 ties images 0 and 1 at 1 (rank 2); the rest rank 1
    assert metrics["i2s_top1"] == pytest.approx(500 / 6) and metrics["i2s_top5"] == pytest.approx(500 / 6)
    assert metrics["i2s_map"] == pytest.approx(100 * (5 + 1 / 6) / 6)
    assert metrics["s2i_top1"] == pytest.approx(400 / 6) and metrics["s2i_top5"] == pytest.approx(500 / 6)
    assert metrics["s2i_map"] == pytest.approx(100 * (4 + 1 / 6 + 1 / 2) / 6)
    # image 0 (even) finds shape 1 (odd); shape 0's tie puts an odd image first, shape 1's tie image 0 (even)
    assert metrics["i2s_category_top1"] == pytest.approx(500 / 6)
    assert metrics["s2i_category_top1"] == pytest.approx(400 / 6)
    assert metrics["images"] == 6 and metrics["shapes"] == 6 and metrics["object_key"] == "index"
    assert metrics["gallery"] == "full" and metrics["split"] == "test" and metrics["pretrained"] is None


def test_many_images_per_shape_embed_each_shape_once(toy_cfg, tmp_path, main):
    metrics = run(main, toy_cfg, tmp_path / "log", "+dataset.common.views=2")
    # batches of 5 over objects 0,0,1,1,2 | 2,3,3,4,4 | 5,5: object 2 straddles two batches
    assert ToyRetrievalModel.clouds == [3, 2, 1]
    assert metrics["object_key"] == "shape_index" and metrics["images"] == 12 and metrics["shapes"] == 6
    assert metrics["queries_i2s"] == 12 and metrics["queries_s2i"] == 6
    # both images of object 0 show e_1: 2 of 12 images miss; shape 1 ties images 0,1 (e_1, wrong) with 2,3 (right)
    assert metrics["i2s_top1"] == pytest.approx(1000 / 12) and metrics["s2i_top1"] == pytest.approx(400 / 6)


def test_batch_protocol_and_pretrained_export(toy_cfg, tmp_path, main):
    checkpoint = tmp_path / "pretrain.pth"
    save_torch({"encoder": ToyRetrievalModel().export_state()["encoder"], "exports": "encoder"}, str(checkpoint))
    ToyRetrievalModel.loaded.clear()
    metrics = run(main, toy_cfg, tmp_path / "log", "retrieval.gallery=batch", "retrieval.batch_size=2",
                  f"pretrained_path={checkpoint}")
    assert ToyRetrievalModel.loaded == [str(checkpoint)] and metrics["pretrained"] == str(checkpoint)
    assert metrics["gallery"] == "batch" and metrics["batch_size"] == 2 and metrics["seed"] == 0
    assert metrics["queries_i2s"] == 6 and metrics["queries_s2i"] == 6
    # image 0 (showing e_1) and shape 0 miss in their batch of 2 (a tie at 0, or object 1's items at 1); shape 1
    # misses too when object 1 shares that batch (images 0 and 1 tie at 1); every other query finds its own item
    (partner,) = [int(b[b != 0]) for b in batch_gallery(6, 2, seed=0) if 0 in b]
    assert metrics["i2s_top1"] == pytest.approx(500 / 6) and metrics["i2s_top5"] == 100.0
    assert metrics["s2i_top1"] == pytest.approx(100 * (5 - (partner == 1)) / 6)


def test_refuses_a_model_without_an_image_encoder(toy_cfg, tmp_path, main, capsys):
    assert main(["--cfg", str(toy_cfg), f"root_dir={tmp_path / 'log'}", "model.NAME=ToyZeroShotOnly"]) == 2
    message = one_sentence(capsys)
    assert "mode=retrieval needs a model with image and 3D encoders, and model.NAME=ToyZeroShotOnly" in message
    assert "supports_retrieval" in message


@pytest.mark.parametrize("where", ["yaml", "override"])
def test_refuses_an_unknown_retrieval_key(toy_cfg, tmp_path, main, capsys, where):
    overrides = ["retrieval.gallary=batch"]
    if where == "yaml":
        toy_cfg.write_text(toy_cfg.read_text() + "retrieval:\n  gallary: batch\n")
        overrides = []
    assert main(["--cfg", str(toy_cfg), f"root_dir={tmp_path / 'log'}", *overrides]) == 2
    message = one_sentence(capsys)
    assert "retrieval.gallary" in message and "gallery" in message


@pytest.mark.parametrize("override, expected", [
    ("retrieval.gallery=batches", "retrieval.gallery is 'batches': set it to full"),
    ("retrieval.batch_size=0", "retrieval.batch_size is 0 but must be an integer >= 1"),
    ("retrieval.object_key=shape_index", "The test samples have no shape_index naming their object"),
])
def test_refuses_a_bad_retrieval_setting_before_embedding(toy_cfg, tmp_path, main, capsys, override, expected):
    ToyRetrievalModel.clouds.clear()
    assert main(["--cfg", str(toy_cfg), f"root_dir={tmp_path / 'log'}", override]) == 2
    assert expected in one_sentence(capsys) and ToyRetrievalModel.clouds == []


# ---- end to end with CLIPAlign (tiny PointNeXt, tiny random CLIP) on a rendered-views triplet folder ------------

TINY_POINTNEXT = {"NAME": "PointNextEncoder", "blocks": [1, 1, 1], "strides": [1, 4, 1], "width": 8, "in_channels": 3,
                  "sa_layers": 1, "radius": 0.3, "nsample": 8, "expansion": 2,
                  "aggr_args": {"feature_type": "dp_fj", "reduction": "max"},
                  "group_args": {"NAME": "ballquery", "normalize_dp": True}, "conv_args": {"order": "conv-norm-act"},
                  "act_args": {"act": "relu"}, "norm_args": {"norm": "bn"}}
CLIP_ALIGN = {"NAME": "CLIPAlign", "encoder_args": TINY_POINTNEXT, "objective": "plain",
              "image_encoder": {"NAME": "clip", "name": "tiny-clip-test", "pretrained": "none"}}


def write_triplets(root: Path, objects: int = 6, views: int = 2, points: int = 64) -> Path:
    """A RenderedViews folder: ``objects`` test objects (and one train object) of two classes, random clouds and
    constant-colour 8 px views."""
    rng = np.random.default_rng(0)
    lines = {"train": [], "test": []}
    for number in range(objects + 1):
        split = "train" if number == objects else "test"
        folder = root / f"object_{number:02d}"
        folder.mkdir(parents=True)
        np.save(folder / "points.npy", rng.normal(size=(points, 3)).astype(np.float32))
        for v in range(views):
            colour = np.array([40 * number % 256, 90 * v, 255 - 30 * number], dtype=np.uint8)
            Image.fromarray(np.broadcast_to(colour, (8, 8, 3)).copy()).save(folder / f"view_{v:02d}.png")
        lines[split].append(f"object_{number:02d} {number % 2}\n")
    for split, rows in lines.items():
        (root / f"{split}.txt").write_text("".join(rows))
    (root / "meta.json").write_text(json.dumps({"classes": ["even", "odd"], "views": views}))
    return root


def test_clip_align_end_to_end_equals_its_own_embeddings(tmp_path, main):
    from plugin.datasets import ClipTriplets
    from plugin.engine.builders import build_model, seed_everything

    data = write_triplets(tmp_path / "triplets")
    cfgs = tmp_path / "cfgs"
    (cfgs / "toy").mkdir(parents=True)
    (cfgs / "default.yaml").write_text((REPO / "cfgs" / "default.yaml").read_text())
    exp = cfgs / "toy" / "clip_align.yaml"
    exp.write_text(yaml.safe_dump({"mode": "retrieval", "device": "cpu", "val_batch_size": 4, "model": CLIP_ALIGN,
                                   "dataset": {"common": {"NAME": "ClipTriplets", "data_dir": str(data),
                                                          "num_points": 64}}}))
    cfg = EasyConfig()
    cfg.update({"model": CLIP_ALIGN})
    seed_everything(0)  # the run seeds with seed: 0 before it builds the model: the same frozen random CLIP
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.projection.weight.add_(torch.randn_like(model.projection.weight))  # the export must be loaded
    checkpoint = tmp_path / "pretrain.pth"
    save_torch(model.checkpoint_entries(), str(checkpoint))
    metrics = run(main, exp, tmp_path / "log", f"pretrained_path={checkpoint}")

    samples = [ClipTriplets(str(data), split="test", num_points=64)[i] for i in range(6)]
    pos = torch.stack([s["pos"] for s in samples])
    with torch.no_grad():
        shapes = model.encode_3d({"pos": pos, "x": pos.transpose(1, 2).contiguous()})
        images = model.encode_image({"img": torch.stack([s["img"] for s in samples])})
    labels = torch.stack([s["y"] for s in samples])
    expected, _ = cross_modal_retrieval(images, shapes, torch.arange(6), labels, labels)
    assert metrics["images"] == 6 and metrics["shapes"] == 6 and metrics["object_key"] == "index"
    assert metrics["model"] == "CLIPAlign" and metrics["pretrained"] == str(checkpoint)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value), key
