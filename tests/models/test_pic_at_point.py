"""Pic@Point model: pose conditioning, frozen 2D backbone, overfitting, encoder export, pre-training runs."""
import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from openpoints.models import build_model_from_cfg
from openpoints.utils import EasyConfig

import plugin  # noqa: F401
from plugin.errors import ConfigError
from plugin.losses import PointPictureInfoNCE
from plugin.render.cameras import look_at
from plugin.render.view_sets import dodecahedron_views

REPO = Path(__file__).resolve().parents[2]
TINY_DGCNN = {"NAME": "DGCNN", "in_channels": 3, "channels": 8, "embed_dim": 32, "n_blocks": 3, "k": 8}


def tiny_model(**kwargs) -> torch.nn.Module:
    cfg = EasyConfig({"NAME": "PicAtPoint", "encoder_args": dict(TINY_DGCNN), "embed_dim": 32, "pose_dim": 8,
                      "image_backbone": {"name": "resnet18", "weights": "none"}, **kwargs})
    return build_model_from_cfg(cfg)


def tiny_batch(m: int = 4, n: int = 128, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pos = torch.nn.functional.normalize(torch.randn(m, n, 3, generator=g), dim=-1) * 0.8
    view, proj = dodecahedron_views()
    return {"pos": pos, "x": pos.transpose(1, 2).contiguous(), "img": torch.randn(m, 3, 224, 224, generator=g),
            "view": view[:m].clone(), "proj": proj[:m].clone()}


def test_pose_encoding_changes_the_local_embedding_and_nothing_else():
    torch.manual_seed(0)
    model = tiny_model().eval()
    data = tiny_batch()
    other = dict(data, view=look_at(torch.tensor([[0.3, 2.0, 1.0]] * 4), torch.zeros(4, 3), (0.0, 1.0, 0.0)))
    with torch.no_grad():
        a, b = model.embed(data), model.embed(other)
    assert not torch.allclose(a["local_3d"], b["local_3d"])
    for key in ("local_2d", "global_3d", "global_2d"):
        assert torch.equal(a[key], b[key]), key
    unconditioned = tiny_model(pose_conditioning=False).eval()
    with torch.no_grad():
        assert torch.equal(unconditioned.embed(data)["local_3d"], unconditioned.embed(other)["local_3d"])


def test_image_backbone_and_its_bn_statistics_stay_frozen():
    torch.manual_seed(0)
    model = tiny_model().train()
    backbone = model.image_backbone
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    loss, _ = model(tiny_batch())
    loss.backward()
    assert not backbone.training
    assert all(p.grad is None and not p.requires_grad for p in backbone.parameters())
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    assert all(p.grad is not None for p in model.local_head_2d.parameters())


def test_tiny_batch_is_overfit():
    torch.manual_seed(0)
    model = tiny_model().train()
    data = tiny_batch()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    first = None
    for _ in range(40):
        loss, logs = model(data)
        first = first if first is not None else float(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss) <= 0.5 * first, (first, float(loss))
    assert logs["local_regions"] > 0 and 0.0 <= logs["outside"] < 1.0


def test_encoder_state_loads_into_openpoints_basecls():
    model = tiny_model()
    cfg = EasyConfig()
    cfg.update({"NAME": "BaseCls", "encoder_args": dict(TINY_DGCNN),
                "cls_args": {"NAME": "ClsHead", "num_classes": 3, "mlps": [16]}})
    classifier = build_model_from_cfg(cfg)
    classifier.encoder.load_state_dict(model.encoder.state_dict(), strict=True)
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(classifier.encoder.state_dict()[key], value)


@pytest.mark.parametrize("name, mean, std", [
    ("resnet18", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),               # ImageNet statistics
    ("tf_efficientnet_lite0", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),              # TF-ported: [-1, 1] inputs
])
def test_images_in_unit_range_are_normalised_with_the_chosen_backbones_statistics(name, mean, std):
    torch.manual_seed(0)
    model = tiny_model(image_backbone={"name": name, "weights": "none", "image_size": 64}).eval()
    resolved = timm.data.resolve_data_config({}, model=model.image_backbone.body)
    assert resolved["mean"] == pytest.approx(mean) and resolved["std"] == pytest.approx(std)
    data = tiny_batch()
    data["img"] = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))      # [0, 1], unnormalised
    normalised = (data["img"] - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        fmap = model.image_backbone.body(normalised)[-1]
        expected = model.local_head_2d(fmap)
        torch.testing.assert_close(model.embed(data)["local_2d"], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kwargs, needle", [
    ({"pose_conditionning": False}, r"Unknown key\(s\) model\.pose_conditionning of PicAtPoint: use "
                                    r"model\.encoder_args, .*model\.pose_conditioning, model\.loss_args"),
    ({"loss_args": {"use_locl": False}}, r"model\.loss_args\.use_locl of PicAtPoint: use model\.loss_args\.tau, "
                                         r"model\.loss_args\.use_local, model\.loss_args\.use_global"),
    ({"image_backbone": {"name": "resnet18", "weight": "none"}}, r"model\.image_backbone\.weight of PicAtPoint"),
])
def test_a_mistyped_switch_is_an_error_naming_the_valid_ones(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        tiny_model(**kwargs)


def test_the_loss_rejects_unknown_switches():
    with pytest.raises(ConfigError, match=r"Unknown PointPictureInfoNCE switch\(es\) use_globl: use tau, use_local, "
                                          r"use_global"):
        PointPictureInfoNCE(use_globl=False)
    with pytest.raises(ConfigError, match="both losses switched off: set use_local or use_global"):
        PointPictureInfoNCE(use_local=False, use_global=False)
