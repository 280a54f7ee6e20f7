"""CLIP2Point's Gated Dual-Path Adapter (Huang et al., Sec. 3.4, Eqs. 12-14) and its ablation variants.

The adapter works on per-view features that two *frozen* encoders computed from the same V depth
images of a cloud: the pre-trained depth encoder (depth path, ``D``) and CLIP's visual encoder (CLIP
path, ``C``). Only the adapters and the gate are trained; the text features are a fixed buffer.
"""
import logging
from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F
from openpoints.models.build import MODELS
from torch import nn

from ..errors import BadInputError, ConfigError

LOGGER = logging.getLogger("plugin")
VARIANTS = ("gated", "dual", "depth_only", "clip_only", "inter_view")
# the encoder paths each variant reads
PATHS = {"gated": ("clip", "depth"), "dual": ("clip", "depth"), "depth_only": ("depth",),
         "clip_only": ("clip",), "inter_view": ("depth",)}


class GlobalViewAdapter(nn.Module):
    """One path's global-view aggregator: the V view features concatenated, then a 2-layer MLP.

    Args:
        num_views: V, the number of views whose features are concatenated.
        feature_dim: D, the size of one view's feature.
        hidden_dim: width of the hidden layer f1.
        out_dim: size of the output (default D).
        dropout: dropout before f1 and after the ReLU (0: none).
    """

    def __init__(self, num_views: int, feature_dim: int, hidden_dim: int, out_dim: Optional[int] = None,
                 dropout: float = 0.0):
        super().__init__()
        self.f1 = nn.Linear(num_views * feature_dim, hidden_dim)
        self.f2 = nn.Linear(hidden_dim, out_dim or feature_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        """(B, V, D) -> (B, out_dim)."""
        # Eq. 12: g = f2(ReLU(f1(concat(f_1, ..., f_V))))
        return self.f2(self.dropout(F.relu(self.f1(self.dropout(views.flatten(1))))))


@MODELS.register_module()
class GatedDualPathAdapter(nn.Module):
    """Few-shot / supervised classifier on frozen per-view features of two encoders (CLIP2Point Sec. 3.4).

    ``forward(depth, clip)`` takes the per-view features of the depth path (B,V,D) and of the CLIP path
    (B,V,D) and returns class logits (B,C) against the fixed text features (set them with
    :meth:`set_text_features`). Variants (CLIP2Point Tab. 4):

    - ``gated`` (Eq. 13): ``G = sigma * G_C + G_D``, each path with its own aggregator (Eq. 12). The gate
      ``sigma`` is a raw learnable scalar multiplying the CLIP path, as Eq. 13 is written; it is *not*
      passed through a sigmoid, so it may grow past 1 or turn negative (``gate_init: 1`` starts with both
      paths weighted equally, which is the official code's fixed average up to the scale that Eq. 14's
      cosine ignores).
    - ``dual``: the same two paths without a gate, ``G = G_C + G_D``.
    - ``depth_only`` / ``clip_only``: one path, ``G = G_D`` or ``G = G_C``.
    - ``inter_view``: a PointCLIP-style inter-view adapter on the depth path alone. The global feature
      ``g`` (Eq. 12) is expanded into a residual per view, ``r_v = ReLU(W_v g)``, blended into the view
      features ``f'_v = f_v + inter_view_ratio * r_v``, and the view-wise features are averaged,
      ``G = mean_v f'_v`` (our reading; PointCLIP's per-view logit weights become equal weights).

    Logits (Eq. 14): ``logit_scale * cos(G, T_c)`` for each class text feature ``T_c``.

    Args:
        num_views: V, views per cloud (10 for CLIP2Point's ``orthogonal_corner10``).
        feature_dim: D, the embedding size of both encoders and of the text features.
        hidden_dim: width of f1 in each aggregator (default D).
        variant: one of ``gated``, ``dual``, ``depth_only``, ``clip_only``, ``inter_view``.
        gate_init: initial value of the gate sigma (``gated`` only).
        logit_scale: fixed temperature of Eq. 14 (CLIP's trained value is 100).
        num_classes: size of the text-feature buffer, so that a checkpoint loads before the text is set
            (default: set by :meth:`set_text_features`).
        dropout: dropout inside the aggregators.
        inter_view_ratio: weight of the per-view residual (``inter_view`` only; PointCLIP uses 0.6).
    """

    def __init__(self, num_views: int = 10, feature_dim: int = 512, hidden_dim: Optional[int] = None,
                 variant: str = "gated", gate_init: float = 1.0, logit_scale: float = 100.0,
                 num_classes: Optional[int] = None, dropout: float = 0.0, inter_view_ratio: float = 0.6,
                 **kwargs: Any):
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError(f"Unknown model.variant '{variant}': set it to one of {', '.join(VARIANTS)}.")
        if int(num_views) < 1 or int(feature_dim) < 1:
            raise ConfigError(f"model.num_views ({num_views}) and model.feature_dim ({feature_dim}) must be "
                              f"positive: set them to the view count and the encoders' embedding size.")
        if kwargs:
            LOGGER.warning(f"GatedDualPathAdapter ignores the unused arguments {', '.join(sorted(kwargs))}")
        self.num_views, self.feature_dim, self.variant = int(num_views), int(feature_dim), variant
        hidden_dim = int(hidden_dim or feature_dim)
        self.paths: Tuple[str, ...] = PATHS[variant]
        if variant == "inter_view":
            self.depth_adapter = GlobalViewAdapter(num_views, feature_dim, hidden_dim, dropout=dropout)
            self.view_residual = nn.Linear(feature_dim, num_views * feature_dim)
            self.inter_view_ratio = float(inter_view_ratio)
        else:
            if "clip" in self.paths:
                self.clip_adapter = GlobalViewAdapter(num_views, feature_dim, hidden_dim, dropout=dropout)
            if "depth" in self.paths:
                self.depth_adapter = GlobalViewAdapter(num_views, feature_dim, hidden_dim, dropout=dropout)
        if variant == "gated":
            # shape (1,): OpenPoints' optimizer factory exempts 1-d parameters from weight decay
            self.gate = nn.Parameter(torch.full((1,), float(gate_init)))
        self.register_buffer("logit_scale", torch.tensor(float(logit_scale)))
        self.register_buffer("text_features", torch.zeros(int(num_classes or 0), self.feature_dim))

    @torch.no_grad()
    def set_text_features(self, text_features: torch.Tensor) -> None:
        """Fix the class text features (C, D); they are L2-normalised and never trained."""
        if text_features.dim() != 2 or text_features.shape[1] != self.feature_dim:
            raise BadInputError(f"Text features of shape {tuple(text_features.shape)} do not match "
                                f"feature_dim={self.feature_dim}: set model.feature_dim to the CLIP embedding size.")
        self.text_features = F.normalize(text_features.detach().float(), dim=-1).to(self.logit_scale.device)

    def _check(self, features: Optional[torch.Tensor], path: str) -> torch.Tensor:
        expected = (self.num_views, self.feature_dim)
        if features is None or features.dim() != 3 or tuple(features.shape[1:]) != expected:
            shape = None if features is None else tuple(features.shape)
            raise BadInputError(f"The {path} path features have shape {shape}, expected (B, {expected[0]}, "
                                f"{expected[1]}): set model.num_views and model.feature_dim to the renderer's "
                                f"view count and the encoders' embedding size.")
        return features

    def fuse(self, depth: Optional[torch.Tensor], clip: Optional[torch.Tensor]) -> torch.Tensor:
        """The fused global feature G (B, D) of the variant from depth-path and CLIP-path view features (B, V, D)."""
        if self.variant == "inter_view":
            views = self._check(depth, "depth")
            residual = F.relu(self.view_residual(self.depth_adapter(views))).view_as(views)
            return (views + self.inter_view_ratio * residual).mean(dim=1)
        g_depth = self.depth_adapter(self._check(depth, "depth")) if "depth" in self.paths else None
        g_clip = self.clip_adapter(self._check(clip, "clip")) if "clip" in self.paths else None
        if self.variant == "gated":
            return self.gate * g_clip + g_depth  # Eq. 13: G = sigma * G^C + G^D
        if self.variant == "dual":
            return g_clip + g_depth
        return g_depth if g_depth is not None else g_clip

    def forward(self, depth: Optional[torch.Tensor], clip: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Class logits (B, C) from depth-path and CLIP-path view features (B, V, D); unused paths may be None."""
        if self.text_features.shape[0] == 0:
            raise BadInputError("GatedDualPathAdapter has no text features: call set_text_features with the "
                                "class text features before the forward pass.")
        fused = F.normalize(self.fuse(depth, clip), dim=-1)
        return self.logit_scale * fused @ self.text_features.t()  # Eq. 14: logit_scale * cos(G, T)
