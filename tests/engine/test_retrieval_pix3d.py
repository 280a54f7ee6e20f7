"""``mode=retrieval`` of ``cfgs/modelnet40/hardneg.yaml`` on Pix3D end to end (tiny PointNeXt, tiny random CLIP, a
fake Pix3D folder written here): many images per shape, so the shape gallery holds each distinct model once (by
``shape_index``), and the figures equal :func:`~plugin.eval.cross_modal_retrieval` of the model's own embeddings of
the Pix3D samples, with the background kept or masked out."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from plugin.datasets import Pix3D
from plugin.engine.builders import build_model, seed_everything
from plugin.engine.config import load_config
from plugin.eval import cross_modal_retrieval
from plugin.io import save_torch
from plugin.models import CLIPAlign
from tests.datasets.test_pix3d import CUBE, FLAT, _image, _mask
from tests.engine.conftest import REPO
from tests.engine.test_hardneg_workflow import TINY_CLIP, TINY_ENCODER

CFG = str(REPO / "cfgs" / "modelnet40" / "hardneg.yaml")
WEDGE = ("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 3\nv 1 0 3\nv 0 1 3\n"        # a triangular prism, 3 long
         "f 1 3 2\nf 4 5 6\nf 1 2 5 4\nf 2 3 6 5\nf 3 1 4 6\n")
# sorted model paths give the shape indices: cube 0, flat 1, wedge 2; the records show them 0,1,2,0,1,2, so the run
# meets them in index order and its gallery rows are the shape indices
MODELS = [("bed", "cube", CUBE), ("table", "flat", FLAT), ("table", "wedge", WEDGE)]
IMAGES_PER_MODEL, POINTS, SIZE, WIDTH = 2, 128, 32, 40                 # 40 x 32 photographs: the crop is exercised


def write_pix3d(root: Path) -> Path:
    """2 categories, 3 models, 2 random 40 x 32 photographs per model, masks of their left halves."""
    for category, name, text in MODELS:
        (root / "model" / category / name).mkdir(parents=True)
        (root / "model" / category / name / "model.obj").write_text(text)
    records = []
    for k in range(IMAGES_PER_MODEL * len(MODELS)):
        category, name, _ = MODELS[k % len(MODELS)]
        img, mask = f"img/{category}/{k:04d}.png", f"mask/{category}/{k:04d}.png"
        for relative, pixels in ((img, _image(WIDTH, SIZE, k)), (mask, _mask(WIDTH, SIZE))):
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / relative)
        records.append({"img": img, "mask": mask, "model": f"model/{category}/{name}/model.obj",
                        "category": category, "img_size": [WIDTH, SIZE], "bbox": [0, 0, WIDTH // 2, SIZE]})
    (root / "pix3d.json").write_text(json.dumps(records))
    return root


@pytest.fixture(scope="module")
def pix3d(tmp_path_factory) -> Path:
    return write_pix3d(tmp_path_factory.mktemp("pix3d"))


def overrides(data: Path, background: bool):
    """The retrieval stage alone on Pix3D: the stage's ClipTriplets dataset block is nulled (stage_cfgs overrides
    apply before the stage merges), then Pix3D's own keys fill it."""
    return ["mode=retrieval", "device=cpu", f"num_points={POINTS}", "val_batch_size=4", *TINY_ENCODER, *TINY_CLIP,
            "stage_cfgs.retrieval.dataset=null", "+dataset.common.NAME=Pix3D", f"+dataset.common.data_dir={data}",
            f"+dataset.common.num_points={POINTS}", f"+dataset.common.image_size={SIZE}",
            f"+dataset.common.background={background}", "retrieval.object_key=auto"]


def test_pix3d_gallery_holds_each_shape_once_and_figures_equal_own_embeddings(pix3d, tmp_path, main,
                                                                               monkeypatch):
    seen = {"clouds": [], "images": []}  # the rows each encode_3d call embeds, the image batches of encode_image
    encode_3d, encode_image = CLIPAlign.encode_3d, CLIPAlign.encode_image

    def spy_3d(self, batch):
        seen["clouds"].append(len(batch["pos"]))
        return encode_3d(self, batch)

    def spy_image(self, batch):
        seen["images"].append(batch["img"].detach().cpu().clone())
        return encode_image(self, batch)

    monkeypatch.setattr(CLIPAlign, "encode_3d", spy_3d)
    monkeypatch.setattr(CLIPAlign, "encode_image", spy_image)

    # the run's model: seeded as the run seeds it (seed 0) before building, so the same frozen random CLIP; the
    # exported encoder and projection perturbed, so the figures hold only if the run loaded the export
    cfg = load_config(CFG, overrides(pix3d, True))
    assert cfg.dataset.common.NAME == "Pix3D" and "sampling" not in cfg.dataset.common
    seed_everything(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.projection.weight.add_(torch.randn_like(model.projection.weight))
    checkpoint = tmp_path / "pretrain.pth"
    save_torch(model.checkpoint_entries(), str(checkpoint))

    runs = {}
    for background in (True, False):
        root = tmp_path / f"log_{background}"
        seen["clouds"].clear()
        seen["images"].clear()
        assert main(["--cfg", CFG, f"root_dir={root}", f"pretrained_path={checkpoint}",
                     *overrides(pix3d, background)]) == 0
        (folder,) = (root / "modelnet40").iterdir()
        metrics = json.loads((folder / "metrics.json").read_text())
        assert seen["clouds"] == [3]                       # batches 0,1,2,0 | 1,2: each model embedded once
        with np.load(folder / "retrieval_test.npz") as saved:
            shape_of, labels = saved["shape_of"], saved["labels"]
        runs[background] = (metrics, torch.cat(seen["images"]))

        data = Pix3D(str(pix3d), num_points=POINTS, image_size=SIZE, background=background)
        assert shape_of.tolist() == data.shape_indices.tolist() == [0, 1, 2, 0, 1, 2]
        assert labels.tolist() == data.labels.tolist() == [0, 1, 1, 0, 1, 1]     # bed, table, table
        samples = [data[i] for i in range(len(data))]
        images = torch.stack([s["img"] for s in samples])
        torch.testing.assert_close(runs[background][1], images, rtol=0, atol=0)  # the run embedded these images
        pos = torch.stack([data[data.shape_indices.tolist().index(u)]["pos"] for u in range(data.num_shapes)])
        with torch.no_grad():
            shapes = model.encode_3d({"pos": pos, "x": pos.transpose(1, 2).contiguous()})
            embedded = model.encode_image({"img": images})
        shape_labels = torch.tensor([0, 1, 1])
        expected, _ = cross_modal_retrieval(embedded, shapes, torch.as_tensor(data.shape_indices),
                                            torch.as_tensor(data.labels), shape_labels)
        for direction in ("i2s", "s2i"):
            for figure in ("top1", "top5", "map"):
                assert f"{direction}_{figure}" in metrics
        for key, value in expected.items():
            assert metrics[key] == pytest.approx(value), (background, key)
        assert metrics["images"] == 6 and metrics["shapes"] == 3 and metrics["object_key"] == "shape_index"
        assert metrics["queries_i2s"] == 6 and metrics["queries_s2i"] == 3
        assert metrics["model"] == "CLIPAlign" and metrics["pretrained"] == str(checkpoint)
        assert metrics["i2s_top5"] == 100.0                   # 3 shapes: every image's shape is in its top 5

    # background=False blacks out the right half of each crop (the mask is the photograph's left half)
    kept, masked = runs[True][1], runs[False][1]
    assert not torch.equal(kept, masked)
    torch.testing.assert_close(masked[..., :SIZE // 2], kept[..., :SIZE // 2], rtol=0, atol=1e-6)
    assert float(masked[..., SIZE // 2:].abs().max()) == 0.0 and float(kept[..., SIZE // 2:].max()) > 0.5
