"""The pretext-model contract (plugin/models/base.py): both models keep it, the engine calls only it, pre-training
checkpoints name their export, and ``stages`` chains a checkpoint only into a mode that reads that export."""
import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from openpoints.utils import EasyConfig

from plugin.clip import zero_shot_logits
from plugin.engine.modes import stages as stages_module
from plugin.engine.builders import build_grouped_optimizer
from plugin.errors import ConfigError
from plugin.io import checkpoint_export, read_checkpoint, save_torch
from plugin.models import CLIP2Point, PicAtPoint
from plugin.models.base import ParamGroup, PretextModel
from tests.conftest import one_sentence
from tests.engine.conftest import DGCNN_CFG, REPO, main, tiny_modelnet, tiny_overrides  # noqa: F401  (fixtures)

from .test_clip2point import _model as tiny_clip2point
from .test_pic_at_point import TINY_DGCNN, tiny_model as tiny_pic_at_point

FIXTURES = REPO / "tests" / "fixtures" / "checkpoints"
ENGINE = REPO / "plugin" / "engine"


def test_both_models_are_pretext_models_with_their_exports_and_capabilities():
    assert issubclass(PicAtPoint, PretextModel) and issubclass(CLIP2Point, PretextModel)
    assert PicAtPoint.exports == "encoder" and CLIP2Point.exports == "depth_encoder"
    assert not PicAtPoint.supports_zero_shot and not PicAtPoint.supports_validation
    assert CLIP2Point.supports_zero_shot and CLIP2Point.supports_validation


def test_pic_at_point_image_heads_train_with_lr_image():
    model = tiny_pic_at_point()
    (group,) = model.param_groups()
    assert isinstance(group, ParamGroup) and group.lr_key == "lr_image"
    image = {id(p) for p in group.params}
    assert image == {id(p) for p in [*model.global_head_2d.parameters(), *model.local_head_2d.parameters()]}
    cfg = EasyConfig()
    cfg.update({"lr": 1e-2, "lr_image": 1e-3, "optimizer": {"NAME": "adamw", "weight_decay": 0.05}})
    optimizer = build_grouped_optimizer(cfg, model)
    lr = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert len(lr) == sum(p.requires_grad for p in model.parameters())
    assert all(lr[i] == pytest.approx(1e-3) for i in image)
    assert all(v == pytest.approx(1e-2) for i, v in lr.items() if i not in image)
    cfg.lr_image = None                                                    # unset: the image side trains with lr
    assert all(g["lr"] == pytest.approx(1e-2) for g in build_grouped_optimizer(cfg, model).param_groups)


def test_param_group_scales_multiply_lr_and_weight_decay():
    class Scaled(PicAtPoint):
        def param_groups(self):
            return [ParamGroup("image", self.image_side_parameters(), lr_scale=0.5, weight_decay_scale=0.0)]

    model = Scaled(encoder_args=EasyConfig(TINY_DGCNN), embed_dim=32, pose_dim=8,
                   image_backbone={"name": "resnet18", "weights": "none"})
    cfg = EasyConfig()
    cfg.update({"lr": 1e-2, "optimizer": {"NAME": "adamw", "weight_decay": 0.05}})
    image = {id(p) for p in model.image_side_parameters()}
    for group in build_grouped_optimizer(cfg, model).param_groups:
        if id(group["params"][0]) in image:
            assert group["lr"] == pytest.approx(5e-3) and group["weight_decay"] == 0.0
        else:
            assert group["lr"] == pytest.approx(1e-2)


def test_export_state_holds_the_exported_key():
    pic = tiny_pic_at_point()
    entries = pic.checkpoint_entries()
    assert set(entries) == {"encoder", "encoder_args", "exports"} and entries["exports"] == "encoder"
    assert set(entries["encoder"]) == {k[len("encoder."):] for k in pic.state_dict() if k.startswith("encoder.")}
    clip2point = tiny_clip2point()
    entries = clip2point.checkpoint_entries()
    assert {"depth_encoder", "clip", "exports"} <= set(entries) and entries["exports"] == "depth_encoder"


def test_clip2point_validation_logits_are_its_zero_shot_encoders():
    model = tiny_clip2point().eval()
    pos = torch.rand(2, 128, 3) * 1.2 - 0.6
    names = ["cube", "chair", "lamp"]
    expected = zero_shot_logits(model.encode_3d({"pos": pos}), model.encode_text(names))
    assert torch.equal(model.validation_logits({"pos": pos}, names), expected)
    assert torch.equal(model.validation_logits(pos, names), expected)


def test_a_capability_without_its_methods_fails_at_class_definition():
    with pytest.raises(TypeError, match="supports_validation but does not implement validation_logits"):
        class Broken(PretextModel):  # noqa: F841
            supports_validation = True
    with pytest.raises(TypeError, match="exports is 'weights'"):
        class Unknown(PretextModel):  # noqa: F841
            exports = "weights"


def test_pretrain_refuses_a_model_that_is_not_a_pretext_model(tiny_modelnet, tmp_path, main, capsys):  # noqa: F811
    args = ["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, tmp_path, epochs=1), "mode=pretrain"]
    assert main(args) == 2
    message = one_sentence(capsys)
    assert "mode=pretrain needs a pretext model, and model.NAME=BaseCls is not one" in message
    assert "plugin.models.base.PretextModel" in message


@pytest.mark.parametrize("name, export", [("pic_at_point", "encoder"), ("clip2point", "depth_encoder"),
                                          ("basecls_finetune", None), ("gdpa_fewshot", None)])
def test_old_checkpoints_without_exports_name_it_by_their_keys(name, export):
    state = read_checkpoint(FIXTURES / f"{name}.pth", "load_path")
    assert "exports" not in state and checkpoint_export(state) == export
    assert checkpoint_export({**state, "exports": "depth_encoder"}) == "depth_encoder"


GDPA = ["model.NAME=GatedDualPathAdapter", "strict_keys=False"]  # the gdpa mode trains it on E_d


@pytest.mark.parametrize("stages, fixture, accepted", [
    (["pretrain", "svm"], "pic_at_point", True), (["pretrain", "zeroshot"], "clip2point", True),
    (["pretrain", "svm"], "clip2point", False), (["pretrain", "fewshot"], "pic_at_point", False),
    (["pretrain", "finetune"], "clip2point", False), (["pretrain", "test"], "pic_at_point", False),
    (["pretrain", "gdpa", *GDPA], "clip2point", True), (["pretrain", "gdpa", *GDPA], "pic_at_point", False)])
def test_stages_chain_a_checkpoint_only_into_a_mode_that_reads_its_export(tiny_modelnet, tmp_path, main,  # noqa: F811
                                                                           capsys, monkeypatch, stages, fixture,
                                                                           accepted):
    stages, extra = stages[:2], stages[2:]
    checkpoint = tmp_path / f"{fixture}.pth"
    shutil.copyfile(FIXTURES / f"{fixture}.pth", checkpoint)
    ran = []

    class Stage:
        def __init__(self, cfg):
            self.cfg = cfg

        def run(self):
            ran.append((self.cfg.mode, self.cfg.get("load_path"), self.cfg.get("pretrained_path")))
            return {"encoder_checkpoint": str(checkpoint), "run_dir": str(tmp_path)}

    monkeypatch.setattr(stages_module, "runner_for", lambda mode: Stage)
    args = ["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, tmp_path / "log"), "mode=stages",
            f"stages={stages}", *extra]
    if accepted:
        assert main(args) == 0
        assert len(ran) == 2 and str(checkpoint) in ran[1]
    else:
        assert main(args) == 2
        message = one_sentence(capsys)
        assert f"Stage 2 ({stages[1]}) reads" in message and str(checkpoint) in message
        assert len(ran) == 1


def test_stages_read_the_recorded_export_before_the_keys(tmp_path):
    state = read_checkpoint(FIXTURES / "pic_at_point.pth", "load_path")
    path = tmp_path / "relabelled.pth"
    save_torch({**state, "exports": "depth_encoder"}, str(path))
    stages_module.check_export(str(path), "zeroshot", 2, "depth_encoder")
    with pytest.raises(ConfigError, match="exports 'depth_encoder'"):
        stages_module.check_export(str(path), "svm", 2, "encoder")


def _probes(tree: ast.AST):
    """``getattr(model, ...)`` / ``getattr(self.model, ...)`` calls in a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr"):
            target = ast.unparse(node.args[0]) if node.args else ""
            if target in ("model", "self.model") or target.endswith(".model"):
                yield f"{ast.unparse(node)} (line {node.lineno})"


def test_the_engine_never_probes_a_model_with_getattr():
    found = {str(path.relative_to(REPO)): list(_probes(ast.parse(path.read_text())))
             for path in sorted(ENGINE.rglob("*.py"))}
    assert "plugin/engine/modes/pretrain.py" in found                          # the engine was scanned
    assert not {path: probes for path, probes in found.items() if probes}
    text = "".join(path.read_text() for path in ENGINE.rglob("*.py"))
    assert "getattr(self.model" not in text and "getattr(model" not in text


ZEROSHOT_CFG = str(REPO / "cfgs" / "modelnet40" / "clip2point-zeroshot.yaml")


def _zeroshot(main, tiny_modelnet, root: Path, *extra: str) -> Path:  # noqa: F811
    args = ["--cfg", ZEROSHOT_CFG, f"dataset.common.data_dir={tiny_modelnet}", f"root_dir={root}",
            "model.clip.name=tiny-clip-test", "model.clip.pretrained=none", "dataset.common.num_points=128",
            "num_points=64", "val_batch_size=12", f"zeroshot.text_cache={root / 'text_cache'}",
            f"pretrained_path={FIXTURES / 'clip2point.pth'}", *extra]
    assert main(args) == 0
    (run,) = [p for p in (root / "modelnet40").glob("clip2point-zeroshot-*") if p.is_dir()]
    return run


def test_zeroshot_through_the_contract_gives_the_depth_path_logits(tiny_modelnet, tmp_path, main):  # noqa: F811
    """``model.NAME=CLIP2Point`` runs ``load_export``/``encode_3d``/``encode_text`` on the same views and prompts
    as the depth-view path: the same logits, bit for bit."""
    depth = _zeroshot(main, tiny_modelnet, tmp_path / "depth")
    contract = _zeroshot(main, tiny_modelnet, tmp_path / "contract", "+model.NAME=CLIP2Point",
                         "model.render.views=orthogonal6", "+model.zero_shot_templates=clip2point")
    a, b = np.load(depth / "logits_test.npz"), np.load(contract / "logits_test.npz")
    assert np.array_equal(a["logits"], b["logits"]) and np.array_equal(a["labels"], b["labels"])
    metrics = json.loads((contract / "metrics.json").read_text())
    assert metrics["model"] == "CLIP2Point" and metrics["pretrained"] == str(FIXTURES / "clip2point.pth")
    assert metrics["zero_shot_protocol"] in ("inductive", "transductive")


def test_zeroshot_refuses_a_model_without_zero_shot_encoders(tiny_modelnet, tmp_path, main, capsys):  # noqa: F811
    args = ["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, tmp_path), "mode=zeroshot"]
    assert main(args) == 2
    assert "mode=zeroshot needs a model with zero-shot encoders, and model.NAME=BaseCls has none" in \
        one_sentence(capsys)


def test_a_workflow_whose_pretrain_model_exports_what_the_next_stage_does_not_read_runs_nothing(
        tiny_modelnet, tmp_path, main, capsys):  # noqa: F811
    """CLIP2Point exports ``depth_encoder``; an ``svm`` stage after it is refused from the classes, before training."""
    args = ["--cfg", str(REPO / "cfgs" / "modelnet40" / "clip2point.yaml"), "model.clip.name=tiny-clip-test",
            "model.clip.pretrained=none", f"root_dir={tmp_path}", "stages=['pretrain', 'svm']",
            f"stage_cfgs.pretrain.dataset.common.data_dir={tiny_modelnet}",
            f"+stage_cfgs.svm.dataset.common.data_dir={tiny_modelnet}"]
    assert main(args) == 2
    message = one_sentence(capsys)
    assert ("Stage 2 (svm) reads the export 'encoder' from load_path, but the checkpoint of stage 1 (pretrain) "
            "will export 'depth_encoder'") in message and "model.NAME PicAtPoint, I2PMAE or CLIPAlign" in message
    assert not (tmp_path / "modelnet40").exists()                          # nothing ran, no folder was made
