"""``mode=zeroshot`` end to end on the tiny ModelNet-layout dataset with the tiny random CLIP."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from plugin.clip import TINY_CLIP, depth_encoder_state, load_clip, trainable_visual_copy
from plugin.engine import load_config
from plugin.engine.modes.zeroshot import zero_shot_protocol

from .conftest import CLASSES, REPO

MN40_CFG = str(REPO / "cfgs" / "modelnet40" / "clip2point-zeroshot.yaml")
MN10_CFG = str(REPO / "cfgs" / "modelnet10" / "clip2point-zeroshot.yaml")


def zeroshot_args(cfg: str, data_dir: Path, root: Path, *extra: str):
    return ["--cfg", cfg, f"dataset.common.data_dir={data_dir}", f"root_dir={root}",
            f"model.clip.name={TINY_CLIP}", "model.clip.pretrained=none", "dataset.common.num_points=128",
            "num_points=64", "val_batch_size=8", f"zeroshot.text_cache={root / 'text_cache'}", *extra]


def run_folder(root: Path, task: str) -> Path:
    runs = list((root / task).glob("clip2point-zeroshot-*"))
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def baseline(tiny_modelnet, tmp_path_factory, main) -> Path:
    """One zero-shot run with CLIP's own (random) visual encoder."""
    root = tmp_path_factory.mktemp("zeroshot")
    assert main(zeroshot_args(MN40_CFG, tiny_modelnet, root)) == 0
    return run_folder(root, "modelnet40")


def test_writes_metrics_and_logits(baseline: Path) -> None:
    metrics = json.loads((baseline / "metrics.json").read_text())
    assert 0.0 <= metrics["top1"] <= 100.0 and 0.0 <= metrics["macc"] <= 100.0
    assert metrics["top5"] == 100.0  # 3 classes: top-5 is clipped to top-3
    assert metrics["samples"] == 12 and set(metrics["per_class"]) == set(CLASSES)
    assert metrics["num_views"] == 6 and metrics["templates"] == ["image of a {}."]
    saved = np.load(baseline / "logits_test.npz")
    assert saved["logits"].shape == (12, 3) and saved["labels"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    top1 = 100.0 * float((saved["logits"].argmax(1) == saved["labels"]).mean())
    assert metrics["top1"] == pytest.approx(top1)
    assert np.abs(saved["logits"]).max() <= 1.0 + 1e-5  # view-averaged cosines
    assert "top1=" in (baseline / "log.txt").read_text()


def test_pretrained_depth_encoder_replaces_the_visual_tower(baseline, tiny_modelnet, tmp_path, main) -> None:
    torch.manual_seed(5)
    encoder = trainable_visual_copy(load_clip(TINY_CLIP, "none"))
    ckpt = tmp_path / "clip2point.pth"
    torch.save({"mode": "pretrain", **depth_encoder_state(encoder)}, ckpt)
    assert main(zeroshot_args(MN40_CFG, tiny_modelnet, tmp_path, f"pretrained_path={ckpt}")) == 0
    run = run_folder(tmp_path, "modelnet40")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["depth_encoder"] == str(ckpt) and metrics["zero_shot_protocol"] == "unknown"  # no run config
    # same text features (seed 0 CLIP), other view features: other logits
    assert not np.allclose(np.load(run / "logits_test.npz")["logits"], np.load(baseline / "logits_test.npz")["logits"])


def test_modelnet10_config_keeps_its_classes(tiny_modelnet, tmp_path, main) -> None:
    assert main(zeroshot_args(MN10_CFG, tiny_modelnet, tmp_path)) == 0
    metrics = json.loads((run_folder(tmp_path, "modelnet10") / "metrics.json").read_text())
    assert metrics["samples"] == 8 and set(metrics["per_class"]) == {"bathtub", "bed"}  # airplane is not in MN10


def test_missing_clip_weights_is_one_sentence(tiny_modelnet, tmp_path, main, capsys) -> None:
    args = [a for a in zeroshot_args(MN40_CFG, tiny_modelnet, tmp_path) if not a.startswith("model.clip.")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "set model.clip.pretrained" in err[0] and "weights/ViT-B-32.pt" in err[0]


@pytest.mark.parametrize("task", ["modelnet40", "modelnet10", "scanobjectnn"])
def test_configs_load_with_their_documented_overrides(task: str) -> None:
    extra = ["dataset.common.variant=PB_T50_RS"] if task == "scanobjectnn" else []
    cfg = load_config(str(REPO / "cfgs" / task / "clip2point-zeroshot.yaml"),
                      ["model.clip.pretrained=weights/other.pt", "pretrained_path=x.pth", *extra])
    assert cfg.mode == "zeroshot" and cfg.model.clip.name == "ViT-B-32"
    assert cfg.model.clip.pretrained == "weights/other.pt" and cfg.zeroshot.templates == "clip2point"
    if task == "scanobjectnn":
        assert (cfg.dataset.common.NAME, cfg.dataset.common.variant) == ("ScanObjectNN", "PB_T50_RS")
    if task == "modelnet10":
        assert cfg.dataset.common.subset == "modelnet10" and cfg.num_classes == 10


def test_pretrained_path_null_uses_the_clip_visual_encoder(tiny_modelnet, tmp_path, main) -> None:
    for spelling in ("null", "none"):
        root = tmp_path / spelling
        assert main(zeroshot_args(MN40_CFG, tiny_modelnet, root, f"pretrained_path={spelling}")) == 0
        metrics = json.loads((run_folder(root, "modelnet40") / "metrics.json").read_text())
        assert metrics["depth_encoder"] == "clip" and metrics["zero_shot_protocol"] == "inductive"


def _pretraining_checkpoint(path: Path, views: Path, source: str) -> Path:
    """A depth-encoder checkpoint whose run config pre-trained on ``views`` rendered from ``source``."""
    views.mkdir(parents=True, exist_ok=True)
    (views / "meta.json").write_text(json.dumps({"source": source, "classes": CLASSES}))
    encoder = trainable_visual_copy(load_clip(TINY_CLIP, "none"))
    cfg = {"dataset": {"common": {"NAME": "RenderedViews", "data_dir": str(views)}}}
    torch.save({"mode": "pretrain", "cfg": cfg, **depth_encoder_state(encoder)}, path)
    return path


@pytest.mark.parametrize("source,protocol", [("modelnet40_normal_resampled", "transductive"),
                                             ("shapenet55", "inductive")])
def test_protocol_says_whether_pretraining_saw_the_evaluated_dataset(tiny_modelnet, tmp_path, main, source,
                                                                     protocol) -> None:
    ckpt = _pretraining_checkpoint(tmp_path / "clip2point.pth", tmp_path / "views", source)
    for cfg, task in ((MN40_CFG, "modelnet40"), (MN10_CFG, "modelnet10")):   # ModelNet10 shapes are ModelNet40's
        assert main(zeroshot_args(cfg, tiny_modelnet, tmp_path, f"pretrained_path={ckpt}")) == 0
        run = run_folder(tmp_path, task)
        assert json.loads((run / "metrics.json").read_text())["zero_shot_protocol"] == protocol
        assert f"zero-shot protocol: {protocol}" in (run / "log.txt").read_text()


def test_protocol_rules() -> None:
    views = {"NAME": "RenderedViews", "data_dir": "/nowhere/views"}        # no meta.json: source unknown
    assert zero_shot_protocol({"dataset": {"common": views}}, views)[0] == "transductive"       # same data root
    modelnet = {"NAME": "ModelNet40Ply2048", "data_dir": "/data/mn40"}
    assert zero_shot_protocol({"dataset": {"common": modelnet}}, {**modelnet, "NAME": "ModelNet40NormalResampled",
                                                                   "data_dir": "/other"})[0] == "transductive"
    assert zero_shot_protocol({"dataset": {"common": views}}, modelnet)[0] == "inductive"
    assert zero_shot_protocol(None, modelnet)[0] == zero_shot_protocol({}, modelnet)[0] == "unknown"
