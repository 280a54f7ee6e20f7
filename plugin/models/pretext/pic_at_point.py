"""Pic@Point: contrastive local and global point-picture correspondence (Herzog & Suwelack)."""
from typing import Any, Dict, List, Optional, Tuple

import torch
from openpoints.models.build import MODELS, build_model_from_cfg
from torch import nn

from ...losses import PointPictureInfoNCE
from ...losses.info_nce import SWITCHES as LOSS_SWITCHES
from ...render.cameras import rotation_of
from ...render.mapping import points_to_cells
from ..base import ParamGroup, PretextModel, reject_unknown_keys
from ..backbones.feature_taps import tap_features
from ..backbones.image_backbones import FrozenImageBackbone
from ..heads.projection_heads import GlobalHead, LocalImageHead, LocalPointHead, PoseEncoder


def _tap_channels(encoder: nn.Module, in_channels: int) -> Tuple[int, int]:
    """Channels of the tap's local and global features, from one small dry run in eval mode."""
    was_training = encoder.training
    encoder.eval()
    pos = torch.rand(1, 256, 3)
    with torch.no_grad():
        _, local, global_feat = tap_features(encoder, {"pos": pos, "x": torch.rand(1, in_channels, 256)})
    encoder.train(was_training)
    return local.shape[1], global_feat.shape[1]


SWITCHES = ("encoder_args", "image_backbone", "embed_dim", "pose_dim", "pose_conditioning", "loss_args")
BACKBONE_KEYS = ("name", "weights", "image_size")


@MODELS.register_module()
class PicAtPoint(PretextModel):
    """Pre-trains an OpenPoints encoder against a frozen 2D backbone (Eqs. 1-3).

    A batch holds ``pos`` (m,N,3), ``x`` (m,C,N), the rendered view ``img`` (m,3,H,W) with values in
    [0, 1], and its cameras ``view``/``proj`` (m,4,4). The model normalises ``img`` with the mean/std of
    the chosen 2D backbone's own pretrained config, so swapping the backbone keeps its input right.
    ``forward`` returns ``(loss, logs)``. As a :class:`~plugin.models.base.PretextModel` it exports
    ``encoder`` (with ``encoder_args``) and trains its image-side heads with ``lr_image``.

    Args:
        encoder_args: any OpenPoints encoder with a feature tap (``PointNextEncoder``, ``DGCNN``).
        image_backbone: :class:`FrozenImageBackbone` arguments (``name``, ``weights``, ``image_size``).
        embed_dim: d of the shared embedding space.
        pose_dim: size of the pose code of the local 3D head.
        pose_conditioning: condition the local 3D head on the view rotation (ablation switch).
        loss_args: :class:`PointPictureInfoNCE` arguments (``tau``, ``use_local``, ``use_global``).
        **kwargs: nothing else is accepted: an unknown key (a mistyped ablation switch) is an error.

    Raises:
        ConfigError: an unknown key of the model, of ``image_backbone`` or of ``loss_args``.
    """

    def __init__(self, encoder_args: Dict[str, Any], image_backbone: Optional[Dict[str, Any]] = None,
                 embed_dim: int = 512, pose_dim: int = 64, pose_conditioning: bool = True,
                 loss_args: Optional[Dict[str, Any]] = None, **kwargs: Any):
        super().__init__()
        reject_unknown_keys(kwargs, SWITCHES, "model", "PicAtPoint")
        reject_unknown_keys(image_backbone or {}, BACKBONE_KEYS, "model.image_backbone", "PicAtPoint")
        loss_args = {k: v for k, v in (loss_args or {}).items() if k != "NAME"}
        reject_unknown_keys(loss_args, LOSS_SWITCHES, "model.loss_args", "PicAtPoint")
        self.encoder_args = encoder_args
        self.encoder = build_model_from_cfg(encoder_args)
        self.image_backbone = FrozenImageBackbone(**(image_backbone or {}))
        local_c, global_c = _tap_channels(self.encoder, int(encoder_args.get("in_channels", 3)))
        image_c = self.image_backbone.out_channels
        self.global_head_3d = GlobalHead(global_c, embed_dim)
        self.global_head_2d = GlobalHead(image_c, embed_dim)
        self.pose_encoder = PoseEncoder(pose_dim) if pose_conditioning else None
        self.local_head_3d = LocalPointHead(local_c, embed_dim, pose_dim if pose_conditioning else 0)
        self.local_head_2d = LocalImageHead(image_c, embed_dim)
        self.criterion = PointPictureInfoNCE(**loss_args)

    def image_side_parameters(self) -> List[nn.Parameter]:
        """Trainable parameters on the image side (the 2D heads); they get their own learning rate."""
        return [*self.global_head_2d.parameters(), *self.local_head_2d.parameters()]

    def param_groups(self) -> List[ParamGroup]:
        """The image-side heads, with ``lr_image`` (``lr`` when unset)."""
        return [ParamGroup("image", self.image_side_parameters(), lr_key="lr_image")]

    def export_state(self) -> Dict[str, Any]:
        """``encoder`` (the encoder-only state dict, loadable into OpenPoints ``BaseCls.encoder``) and
        ``encoder_args``; the projection heads stay behind."""
        return {"encoder": self.encoder.state_dict(), "encoder_args": dict(self.encoder_args)}

    def embed(self, data: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """All embeddings of a batch: ``local_3d`` (m,d,L), ``local_2d`` (m,d,S*S), ``global_3d``/``global_2d`` (m,d),
        plus ``cells``/``inside`` (m,L) of the 3D regions' centres on the S x S grid (Sec. 3.3)."""
        centers, local, global_feat = tap_features(self.encoder, data)
        fmap, image_global = self.image_backbone(self.image_backbone.normalize(data["img"]))
        pose = self.pose_encoder(rotation_of(data["view"])) if self.pose_encoder is not None else None
        cells, inside = points_to_cells(centers, data["view"], data["proj"], fmap.shape[-1])
        return {"local_3d": self.local_head_3d(local, pose), "local_2d": self.local_head_2d(fmap),
                "global_3d": self.global_head_3d(global_feat), "global_2d": self.global_head_2d(image_global),
                "cells": cells, "inside": inside}

    def forward(self, data: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, float]]:
        e = self.embed(data)
        loss, logs = self.criterion(e["local_3d"], e["local_2d"], e["cells"], e["inside"],
                                    e["global_3d"], e["global_2d"])
        logs.update(loss=loss.item(), outside=(~e["inside"]).float().mean().item())
        return loss, logs
