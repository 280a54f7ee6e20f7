"""CLIP2Point image-depth pre-training (Huang et al., Eqs. 5-7).

A trainable copy E_d of CLIP's visual encoder learns to map depth maps of a point cloud into the
CLIP image space: two depth maps rendered from the RGB view's camera at two jittered distances are
pulled together (L_intra) and their mean feature towards the frozen CLIP feature E_i of the RGB view
(L_cross), balanced by a learnable σ (:class:`~plugin.losses.SigmaBalancedLoss`, Eq. 7). The
``cross_only`` ablation (Sec. 5.6) renders one depth map at the original camera distance and
contrasts it with E_i alone.
"""
import logging
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from openpoints.models.build import MODELS

from ...clip import (ClipModel, build_depth_renderer, depth_encoder_state, encode_views, load_clip_from_cfg,
                    load_depth_encoder, resolve_templates, text_classifier, trainable_visual_copy, zero_shot_logits)
from ...errors import BadInputError, ConfigError
from ...losses import SigmaBalancedLoss
from ...render.depth_renderer import render_depth
from ...render.view_sets import DISTANCE_JITTER, sample_distance_scales, scale_camera_distance
from ..base import Batch, PretextModel, batch_of

LOGGER = logging.getLogger("plugin")


@MODELS.register_module()
class CLIP2Point(PretextModel):
    """Image-depth pre-training of a CLIP visual tower on depth maps (CLIP2Point).

    A batch holds ``pos`` (B,N,3) in the cameras' world frame, the RGB view ``img`` (B,3,H,W) in [0, 1]
    (a size other than CLIP's input is resized bilinearly; the model normalises it with the CLIP's own
    mean/std), and its cameras ``view``/``proj`` (B,4,4). ``forward`` returns ``(loss, logs)``.

    Only E_d (``depth_encoder``) and σ train; the CLIP model (E_i and the text tower) is frozen and held
    outside the module tree, so it follows ``.to()`` but stays out of ``state_dict()`` and checkpoints
    (it is reloaded from ``clip.pretrained``).

    Args:
        clip: ``{name, pretrained}`` of the open_clip model (:func:`plugin.clip.load_clip_from_cfg`).
        render: :class:`~plugin.render.DepthRenderer` arguments (:func:`plugin.clip.build_depth_renderer`);
            ``image_size``, ``mean`` and ``std`` default to CLIP's, ``encoding`` to the authors' release
            (:data:`~plugin.render.depth_renderer.CLIP2POINT_ENCODING`), ``views`` to the 10-view set
            (``orthogonal_corner10``, as the release's validation). ``views`` are the cameras of the zero-shot
            validation; the pre-training depth maps use each sample's own RGB camera.
        tau: NT-Xent temperature (0.7 in the supplement).
        loss: :class:`~plugin.losses.SigmaBalancedLoss` switches: ``cross_only`` (one depth map at the original
            distance against the RGB view, Sec. 5.6), ``init_sigma``.
        distance_jitter: ``[low, high)`` of the uniform camera-distance scales of the two depth maps.
        zero_shot_templates: prompt templates of the zero-shot validation (:func:`plugin.clip.resolve_templates`).
    """

    exports = "depth_encoder"
    supports_zero_shot = True
    supports_validation = True

    def __init__(self, clip: Optional[Dict[str, Any]] = None, render: Optional[Dict[str, Any]] = None,
                 tau: float = 0.7, loss: Optional[Dict[str, Any]] = None,
                 distance_jitter: Sequence[float] = DISTANCE_JITTER, zero_shot_templates: Any = "clip2point",
                 **kwargs: Any):
        super().__init__()
        if kwargs:
            LOGGER.warning(f"CLIP2Point ignores unknown arguments: {', '.join(sorted(kwargs))}")
        self.clip_cfg = dict(clip or {})
        self.clip: ClipModel = load_clip_from_cfg(clip, key="model.clip")   # frozen, not a registered submodule
        self.renderer = build_depth_renderer({"views": "orthogonal_corner10", **(render or {})}, self.clip)
        self.depth_encoder = trainable_visual_copy(self.clip)             # E_d, initialised from E_i
        jitter = [float(v) for v in distance_jitter]
        if len(jitter) != 2 or not 0 < jitter[0] < jitter[1]:
            raise ConfigError(f"model.distance_jitter is {list(distance_jitter)}: set it to [low, high) with "
                              f"0 < low < high, e.g. [0.9, 1.1].")
        self.distance_jitter: Tuple[float, float] = (jitter[0], jitter[1])
        loss = {k: v for k, v in dict(loss or {}).items() if k != "NAME"}
        unknown = set(loss) - {"cross_only", "init_sigma"}
        if unknown:
            raise ConfigError(f"Unknown key(s) {', '.join(sorted(unknown))} in model.loss: use cross_only and "
                              f"init_sigma.")
        self.criterion = SigmaBalancedLoss(tau=tau, tau_key="model.tau", init_sigma_key="model.loss.init_sigma", **loss)
        self.zero_shot_templates = resolve_templates(zero_shot_templates, "model.zero_shot_templates")
        self._text_cache: Dict[Tuple[str, ...], torch.Tensor] = {}

    def _apply(self, fn, *args, **kwargs):
        """Device and dtype moves also reach the frozen CLIP held outside the module tree."""
        super()._apply(fn, *args, **kwargs)
        self.clip.model._apply(fn, *args, **kwargs)
        return self

    def render_from(self, points: torch.Tensor, view: torch.Tensor, proj: torch.Tensor,
                    scale: torch.Tensor) -> torch.Tensor:
        """CLIP-ready depth images (B,3,H,W) of each cloud from its own camera moved to ``scale`` x its distance.

        Args:
            points: (B, N, 3) world coordinates.
            view: (B, 4, 4) world-to-camera matrices (the RGB view's camera).
            proj: (B, 4, 4) camera-to-clip matrices.
            scale: (B,) camera-distance factors.
        """
        r = self.renderer
        cameras = scale_camera_distance(view, scale.to(view))
        depth = render_depth(points, cameras.unsqueeze(1), proj.unsqueeze(1), r.image_size, r.dilation,
                             r.reduction).depth.to(points.dtype)
        return r.to_image(depth)[:, 0]

    def encode_image(self, img: torch.Tensor) -> torch.Tensor:
        """Frozen CLIP features E_i (B, D) of RGB images (B,3,H,W) in [0, 1], without gradients.

        The images are resized to CLIP's input and normalised with its mean/std, as CLIP's preprocessing does.
        """
        size = self.clip.image_size
        if img.shape[-2:] != (size, size):
            img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.clip.image_mean, dtype=img.dtype, device=img.device).view(1, 3, 1, 1)
        std = torch.tensor(self.clip.image_std, dtype=img.dtype, device=img.device).view(1, 3, 1, 1)
        with torch.no_grad():
            return self.clip.visual((img - mean) / std)

    def forward(self, data: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, float]]:
        """The σ-balanced loss of one batch (Eq. 7), or L_cross alone with ``loss.cross_only`` (Sec. 5.6).

        Args:
            data: ``pos`` (B,N,3), ``img`` (B,3,H,W) RGB view in [0, 1], ``view``/``proj`` (B,4,4) its cameras.

        Returns:
            ``(loss, logs)`` with ``l_intra``, ``l_cross``, ``sigma`` and ``loss`` (``l_cross`` and ``loss`` with
            ``cross_only``).
        """
        missing = [k for k in ("pos", "img", "view", "proj") if k not in data]
        if missing:
            raise BadInputError(f"CLIP2Point needs pos, img, view and proj in a batch, {', '.join(missing)} missing: "
                                f"use dataset.common.NAME=RenderedViews.")
        pos, view, proj = data["pos"], data["view"], data["proj"]
        batch, (low, high) = pos.shape[0], self.distance_jitter
        f_i = self.encode_image(data["img"])
        if self.criterion.cross_only:  # Sec. 5.6: one depth map at the RGB view's own distance
            with torch.no_grad():
                depth = self.render_from(pos, view, proj, torch.ones(batch, device=pos.device))
            f_d1, f_d2 = self.depth_encoder(depth), None
        else:
            with torch.no_grad():  # two independent distances d1, d2 along the RGB view's direction
                scale_1 = sample_distance_scales(batch, low=low, high=high, device=pos.device)
                scale_2 = sample_distance_scales(batch, low=low, high=high, device=pos.device)
                depth = torch.cat([self.render_from(pos, view, proj, scale_1),
                                   self.render_from(pos, view, proj, scale_2)])
            f_d1, f_d2 = self.depth_encoder(depth).chunk(2)
        loss, logs = self.criterion(f_d1, f_d2, f_i)
        logs["loss"] = loss.item()
        return loss, logs

    def text_features(self, class_names: Sequence[str]) -> torch.Tensor:
        """CLIP text classifier (C, D) of ``class_names`` with ``zero_shot_templates``, computed once per class list."""
        key = tuple(str(n) for n in class_names)
        if key not in self._text_cache:
            self._text_cache[key] = text_classifier(self.clip, key, self.zero_shot_templates).cpu()
        return self._text_cache[key].to(self.clip.device)

    def load_export(self, state: Dict[str, Any], path: str, key: str = "pretrained_path") -> None:
        """Load the ``depth_encoder`` of a CLIP2Point pre-training checkpoint into E_d."""
        load_depth_encoder(self.depth_encoder, path, key, state=state)

    @torch.no_grad()
    def encode_3d(self, batch: Batch) -> torch.Tensor:
        """Per-view features (B, V, D) of E_d on the renderer's views (``render.views``) of ``batch["pos"]``."""
        return encode_views(self.depth_encoder, self.renderer(batch_of(batch)["pos"]))

    def encode_text(self, class_names: Sequence[str]) -> torch.Tensor:
        """CLIP text classifier (C, D) of ``class_names`` (:meth:`text_features`)."""
        return self.text_features(class_names)

    @torch.no_grad()
    def validation_logits(self, batch: Any, class_names: Sequence[str]) -> torch.Tensor:
        """Zero-shot logits (B, C) of clouds from E_d on the renderer's views (``render.views``), Eq. 11.

        Args:
            batch: a batch with ``pos`` (B, N, 3), or ``pos`` itself: clouds centred and in the unit sphere.
            class_names: the C class names, in label order.
        """
        return zero_shot_logits(self.encode_3d(batch), self.encode_text(class_names))

    def export_state(self) -> Dict[str, Any]:
        """Checkpoint entries for downstream use: ``depth_encoder`` (E_d's state dict) and the ``clip`` block."""
        return {**depth_encoder_state(self.depth_encoder), "clip": dict(self.clip_cfg)}
