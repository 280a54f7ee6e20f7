"""``cfgs/modelnet40/hardneg.yaml`` ("No Captions, No Problem"): its stage chain (a CLIPAlign pre-training exports
'encoder', and the zeroshot, retrieval and finetune stages read it), the whole workflow end to end at tiny size
(tiny PointNeXt, tiny random CLIP, a tiny rendered-views triplet folder with its similarity store, a tiny ModelNet
layout), and the one-sentence refusal of a hard-negative run without its store."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from plugin.engine.config import load_config
from plugin.engine.modes.stages import check_workflow, planned_export, reads, stage_config
from plugin.errors import ConfigError
from plugin.models import CLIPAlign
from tests.conftest import load_tool, one_sentence
from tests.engine.conftest import CLASSES as MODELNET_CLASSES
from tests.engine.conftest import REPO, main, tiny_modelnet  # noqa: F401  (fixtures)

CFG = str(REPO / "cfgs" / "modelnet40" / "hardneg.yaml")
CLIP2POINT_CFG = str(REPO / "cfgs" / "modelnet40" / "clip2point.yaml")
I2I_CFG = str(REPO / "cfgs" / "shapenet" / "hardneg-i2i.yaml")
STAGES = ["pretrain", "zeroshot", "retrieval", "finetune"]
CATEGORIES = ["airplane", "chair", "lamp"]
TRAIN_PER_CATEGORY, TEST_PER_CATEGORY, VIEWS, SIZE, POINTS = 4, 2, 2, 32, 128
LANDMARKS = {"airplane": ["a jet with swept wings.", "a propeller plane."],
             "chair": ["a chair with four legs.", "an office chair on wheels."],
             "lamp": ["a desk lamp with a shade.", "a tall floor lamp."]}
# tests/models/test_clip_align.py's TINY_POINTNEXT over the PointNeXt-S block of cfgs/_blocks/clip_align.yaml; the
# same encoder in the finetune stage (cfgs/modelnet40/pointnext-s.yaml), so its 'encoder' export fits there
TINY_ENCODER = ["model.encoder_args.blocks=[1,1,1]", "model.encoder_args.strides=[1,4,1]",
                "model.encoder_args.width=8", "model.encoder_args.sa_layers=1", "model.encoder_args.radius=0.3",
                "model.encoder_args.nsample=8", "model.encoder_args.expansion=2"]
TINY_CLIP = ["model.image_encoder.name=tiny-clip-test", "model.image_encoder.pretrained=none"]


def write_triplets(root: Path) -> Path:
    """A RenderedViews folder (no cameras.npz): 3 categories x (4 train + 2 test) objects, 2 random 32 px views each
    and 128 random points; a PointCLIP V2-style landmark file ``landmarks.json`` beside it."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    lines = {"train": [], "test": []}
    for label, name in enumerate(CATEGORIES):
        for split, count in (("train", TRAIN_PER_CATEGORY), ("test", TEST_PER_CATEGORY)):
            for k in range(count):
                object_id = f"{name}_{split}_{k}"
                (root / object_id).mkdir()
                scale = np.array([1.0 + label, 1.0, 0.5 + 0.5 * label])  # each category its own proportions
                np.save(root / object_id / "points.npy", (rng.normal(size=(POINTS, 3)) * scale).astype(np.float32))
                for v in range(VIEWS):
                    pixels = rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(root / object_id / f"view_{v:02d}.png")
                lines[split].append(f"{object_id} {label}\n")
    for split, rows in lines.items():
        (root / f"{split}.txt").write_text("".join(rows))
    (root / "meta.json").write_text(json.dumps({"classes": CATEGORIES, "views": VIEWS, "image_size": SIZE}))
    (root.parent / "landmarks.json").write_text(json.dumps(LANDMARKS))
    return root


@pytest.fixture(scope="module")
def triplets(tmp_path_factory) -> Path:
    return write_triplets(tmp_path_factory.mktemp("hardneg") / "views")


@pytest.fixture(scope="module")
def store(triplets) -> Path:
    """The similarity store of the triplets' train split (I2I and (I2L)^2: hardneg-avg needs both), made by
    tools/precompute_similarity.py with the tiny CLIP."""
    out = triplets.parent / "store"
    torch.manual_seed(0)
    status = load_tool("precompute_similarity").main([
        "--data", str(triplets), "--split", "train", "--out", str(out), "--encoder", "NAME=clip",
        "name=tiny-clip-test", "pretrained=none", "--landmarks", str(triplets.parent / "landmarks.json"),
        "--num-landmarks", "2", "--workers", "0", "--device", "cpu"])
    assert status == 0
    assert json.loads((out / "manifest.json").read_text())["kinds"] == ["i2i", "i2l2"]
    return out


def workflow_overrides(root: Path, triplets: Path, store: Path, modelnet: Path) -> list:
    """Every stage of cfgs/modelnet40/hardneg.yaml at tiny size, on the tiny data."""
    return [f"root_dir={root}", "device=cpu", "num_points=128", "dataset.common.num_points=128", *TINY_ENCODER,
            *TINY_CLIP, "batch_size=4", "val_batch_size=6",
            f"stage_cfgs.pretrain.dataset.common.data_dir={triplets}",
            f"stage_cfgs.pretrain.dataset.common.store={store}", f"stage_cfgs.pretrain.model.similarity.dir={store}",
            "stage_cfgs.pretrain.epochs=1", "stage_cfgs.pretrain.warmup_epochs=0",
            f"+stage_cfgs.zeroshot.dataset.common.data_dir={modelnet}",
            f"stage_cfgs.retrieval.dataset.common.data_dir={triplets}",
            f"+stage_cfgs.finetune.dataset.common.data_dir={modelnet}", "stage_cfgs.finetune.epochs=1",
            "num_classes=3", "stage_cfgs.finetune.model.cls_args.num_classes=3",
            "stage_cfgs.finetune.model.cls_args.mlps=[16]"]


# ---- the chain, unit level -------------------------------------------------------------------------------------

def test_the_hardneg_chain_is_encoder_throughout(triplets, store, tiny_modelnet, tmp_path):  # noqa: F811
    cfg = load_config(CFG, workflow_overrides(tmp_path, triplets, store, tiny_modelnet))
    assert check_workflow(cfg) == STAGES
    configs = {stage: stage_config(cfg, stage) for stage in STAGES}
    assert configs["pretrain"].model.NAME == "CLIPAlign" and configs["pretrain"].model.objective == "hardneg"
    assert configs["pretrain"].model.similarity.kind == "avg"
    assert planned_export(configs["pretrain"]) == "encoder"
    assert {stage: configs[stage].model.NAME for stage in STAGES[1:]} == \
        {"zeroshot": "CLIPAlign", "retrieval": "CLIPAlign", "finetune": "BaseCls"}
    assert {stage: reads(stage, configs[stage]) for stage in STAGES[1:]} == dict.fromkeys(STAGES[1:], "encoder")
    # the evaluation stages build CLIPAlign without the store; the finetune classifier keeps no CLIPAlign key
    assert configs["zeroshot"].model.objective == "plain" and configs["retrieval"].model.objective == "plain"
    assert "image_encoder" not in configs["finetune"].model


def test_a_zeroshot_stage_without_its_own_model_reads_a_depth_encoder():
    clip2point = load_config(CLIP2POINT_CFG, ["model.clip.name=tiny-clip-test", "model.clip.pretrained=none"])
    zeroshot = stage_config(clip2point, "zeroshot")           # CLIP2Point's zero-shot: CLIP with the depth encoder
    assert not zeroshot.model.get("NAME") and reads("zeroshot", zeroshot) == "depth_encoder"
    assert planned_export(stage_config(clip2point, "pretrain")) == "depth_encoder"
    assert reads("zeroshot", {}) == "depth_encoder"
    assert reads("zeroshot", {"model": {"NAME": None}}) == "depth_encoder"
    assert reads("zeroshot", {"model": {"NAME": "BaseCls"}}) == "depth_encoder"   # no PretextModel: the mode's
    assert reads("zeroshot", {"model": {"NAME": "CLIPAlign"}}) == "encoder"
    assert reads("zeroshot", {"model": {"NAME": "CLIP2Point"}}) == "depth_encoder"
    assert reads("retrieval", {}) == "encoder"
    assert reads("fewshot", {"model": {"NAME": "CLIPAlign"}}) == "depth_encoder"  # not an own-model mode
    assert reads("finetune", {"model": {"NAME": "CLIP2Point"}}) == "encoder"
    assert reads("test", {}) is None


def test_a_depth_encoder_stage_after_clip_align_is_refused_before_any_run(triplets, store, tiny_modelnet,  # noqa: F811
                                                                          tmp_path):
    overrides = workflow_overrides(tmp_path / "log", triplets, store, tiny_modelnet)
    cfg = load_config(CFG, [*overrides, "stages=['pretrain', 'fewshot']"])
    with pytest.raises(ConfigError, match=r"Stage 2 \(fewshot\) reads the export 'depth_encoder' from "
                                          r"pretrained_path, but the checkpoint of stage 1 \(pretrain\) will export "
                                          r"'encoder'"):
        check_workflow(cfg)
    assert not (tmp_path / "log").exists()


# ---- end to end ------------------------------------------------------------------------------------------------

def test_the_four_stages_chain_the_aligned_encoder(triplets, store, tiny_modelnet, tmp_path, main,  # noqa: F811
                                                   monkeypatch):
    used = []  # the weights of each CLIPAlign instance when it first embeds clouds: pretrain (validation), zeroshot,
    # retrieval
    encode_3d = CLIPAlign.encode_3d

    def spy(self, batch):
        if not any(model is self for model, _ in used):
            used.append((self, {"encoder": {k: v.detach().clone() for k, v in self.encoder.state_dict().items()},
                                "projection": {k: v.detach().clone() for k, v in self.projection.state_dict().items()},
                                "logit_scale": self.logit_scale.detach().clone()}))
        return encode_3d(self, batch)

    monkeypatch.setattr(CLIPAlign, "encode_3d", spy)
    assert main(["--cfg", CFG, *workflow_overrides(tmp_path, triplets, store, tiny_modelnet)]) == 0
    folders = {p.name.split("-")[1]: p for p in (tmp_path / "modelnet40").glob("hardneg-*")}
    workflow = next(p for stage, p in folders.items() if stage.isdigit())            # hardneg-<time>
    runs = {stage: p for stage, p in folders.items() if not stage.isdigit()}
    assert set(runs) == set(STAGES)
    checkpoint = str(runs["pretrain"] / "ckpt_best.pth")
    state = torch.load(checkpoint, weights_only=True)
    assert state["exports"] == "encoder" and {"encoder", "projection", "logit_scale"} <= set(state)
    metrics = {stage: json.loads((runs[stage] / "metrics.json").read_text()) for stage in STAGES}
    assert metrics["pretrain"]["selected_by"] == "zeroshot" and metrics["pretrain"]["epochs"] == 1
    assert 0 <= metrics["zeroshot"]["top1"] <= metrics["zeroshot"]["top5"] <= 100
    assert list(metrics["zeroshot"]["per_class"]) == MODELNET_CLASSES and metrics["zeroshot"]["samples"] == 12
    retrieval = metrics["retrieval"]
    for direction in ("i2s", "s2i"):
        assert 0 <= retrieval[f"{direction}_top1"] <= retrieval[f"{direction}_top5"] <= 100
        assert 0 < retrieval[f"{direction}_map"] <= 100
    n_test = len(CATEGORIES) * TEST_PER_CATEGORY  # one image per object (view 0) against its own shape
    assert retrieval["images"] == retrieval["shapes"] == n_test and retrieval["object_key"] == "index"
    assert retrieval["split"] == "test" and retrieval["gallery"] == "full" and retrieval["model"] == "CLIPAlign"
    assert 0 <= metrics["finetune"]["test_oa"] <= 100
    assert metrics["finetune"]["pretrained_path"] == checkpoint
    assert metrics["finetune"]["encoder_tensors_loaded"] == len(state["encoder"])   # every encoder tensor
    for stage in ("zeroshot", "retrieval", "finetune"):               # each later stage loaded the pretrain export
        assert f"pretrained_path: {checkpoint}" in (runs[stage] / "cfg.yaml").read_text(), stage
    assert metrics["zeroshot"]["pretrained"] == checkpoint and retrieval["pretrained"] == checkpoint
    assert len(used) == 3
    for _, weights in used[1:]:                                  # zeroshot and retrieval embed with the export
        for part in ("encoder", "projection"):
            assert weights[part].keys() == state[part].keys()
            for key, value in state[part].items():
                torch.testing.assert_close(weights[part][key], value, rtol=0, atol=0, msg=key)
        torch.testing.assert_close(weights["logit_scale"], state["logit_scale"].reshape(()))
    configs = {stage: yaml.safe_load((runs[stage] / "cfg.yaml").read_text()) for stage in STAGES}
    assert configs["pretrain"]["model"]["objective"] == "hardneg"           # trained with the AVG hard negatives
    assert configs["pretrain"]["model"]["similarity"]["kind"] == "avg"
    assert configs["zeroshot"]["model"]["objective"] == configs["retrieval"]["model"]["objective"] == "plain"
    stages = json.loads((workflow / "metrics.json").read_text())["stages"]
    assert set(stages) == set(STAGES)
    for stage, key in (("zeroshot", "top1"), ("retrieval", "i2s_top1"), ("retrieval", "s2i_map"),
                       ("finetune", "test_oa")):
        assert stages[stage][key] == metrics[stage][key], (stage, key)


# ---- a missing store -------------------------------------------------------------------------------------------

def test_a_missing_store_is_one_sentence_naming_the_key_and_the_precompute(triplets, tmp_path, main,  # noqa: F811
                                                                             capsys):
    missing = tmp_path / "no_store"
    status = main(["--cfg", I2I_CFG, f"root_dir={tmp_path / 'log'}", "device=cpu", *TINY_CLIP, *TINY_ENCODER,
                   f"dataset.common.data_dir={triplets}", f"dataset.common.store={missing}",
                   f"model.similarity.dir={missing}", "epochs=1", "warmup_epochs=0", "batch_size=4"])
    assert status == 2
    message = one_sentence(capsys)
    assert str(missing) in message and "tools/precompute_similarity.py" in message
    assert "model.similarity.dir" in message or "dataset.common.store" in message
    assert not list((tmp_path / "log").glob("shapenet/*"))            # no run folder left behind
