"""CLIP2Point's Gated Dual-Path Adapter (Huang et al., Sec. 3.4, Eqs. 12-14) and its ablation variants.

The adapter works on per-view features that two *frozen* encoders computed from the same V depth
images of a cloud: the pre-trained depth encoder (depth path, ``D``) and CLIP's visual encoder (CLIP
path, ``C``). Only the adapters and the gate are trained; the text features are a fixed buffer.
"""
import logging
from typing import Any, Mapping, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from openpoints.models.build import MODELS
from torch import nn

from ...errors import BadInputError, ConfigError

LOGGER = logging.getLogger("plugin")
ADAPTER_NAME = "GatedDualPathAdapter"
# keys of the adapter's model block that configure the gdpa mode (CLIP, renderer, text head), not its constructor
RUNNER_MODEL_KEYS = ("clip", "render", "templates", "text_cache", "class_names")
VARIANTS = ("gated", "dual", "depth_only", "clip_only", "inter_view")
LEARNABLE = "learnable"  # model.logit_scale value for a trained temperature


def is_adapter_config(cfg: Mapping[str, Any]) -> bool:
    """Whether ``cfg.model`` is the Gated Dual-Path Adapter (trained by the ``gdpa`` and ``fewshot`` modes).

    Args:
        cfg: a run config.
    """
    model = cfg.get("model") or {}
    return isinstance(model, Mapping) and model.get("NAME") == ADAPTER_NAME


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


def parse_logit_scale(value: Union[None, float, str]) -> Optional[float]:
    """``model.logit_scale``: None (plain cosine, scale 1), a positive number (fixed), or ``learnable``.

    Returns the fixed scale, or None for ``learnable``.

    Args:
        value: the config value (``null``, a number, or the string ``learnable``).
    """
    if value is None:
        return 1.0
    if isinstance(value, str) and value.strip().lower() == LEARNABLE:
        return None
    try:
        scale = float(value)
    except (TypeError, ValueError):
        scale = float("nan")
    if not scale > 0:
        raise ConfigError(f"model.logit_scale is {value!r}: set it to null (plain cosine, Eq. 14), a positive "
                          f"number (a fixed scale, e.g. CLIP's 100), or {LEARNABLE}.")
    return scale


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
    - ``inter_view``: PointCLIP's inter-view adapter on the depth path alone, scored as Eq. 4 scores views:
      the global feature ``g`` (Eq. 12) is expanded into a residual per view, ``r_v = ReLU(W_v g)``, blended
      into the view features ``f'_v = f_v + inter_view_ratio * r_v``, and the logits are the view-weighted
      sum of per-view cosines, ``sum_v alpha_v cos(f'_v, T_c)``. PointCLIP searches the view weights
      ``alpha`` after training (on the test set); here they are learnable parameters (``view_weights``),
      initialised to ``1/V`` so that training starts from Eq. 11's view average.

    Logits (Eq. 14): ``s * cos(G, T_c)`` for each class text feature ``T_c``, where ``s`` is 1 by default (the
    plain cosine of Eq. 14 and of the authors' release), a fixed number, or learned (``logit_scale``).

    Args:
        num_views: V, views per cloud (10 for CLIP2Point's ``orthogonal_corner10``).
        feature_dim: D, the embedding size of both encoders and of the text features.
        hidden_dim: width of f1 in each aggregator (default D).
        variant: one of ``gated``, ``dual``, ``depth_only``, ``clip_only``, ``inter_view``.
        gate_init: initial value of the gate sigma (``gated`` only).
        logit_scale: the scale s of Eq. 14's cosine: null (s = 1, the paper's plain cosine), a positive number
            (fixed, e.g. CLIP's trained 100), or ``learnable`` (s = exp(t) with t trained from 0, i.e. s = 1).
        num_classes: size of the text-feature buffer, so that a checkpoint loads before the text is set
            (default: set by :meth:`set_text_features`).
        dropout: dropout inside the aggregators.
        inter_view_ratio: weight of the per-view residual (``inter_view`` only; PointCLIP uses 0.6).
    """

    def __init__(self, num_views: int = 10, feature_dim: int = 512, hidden_dim: Optional[int] = None,
                 variant: str = "gated", gate_init: float = 1.0, logit_scale: Union[None, float, str] = None,
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
            self.view_weights = nn.Parameter(torch.full((self.num_views,), 1.0 / self.num_views))
            self.inter_view_ratio = float(inter_view_ratio)
        else:
            if "clip" in self.paths:
                self.clip_adapter = GlobalViewAdapter(num_views, feature_dim, hidden_dim, dropout=dropout)
            if "depth" in self.paths:
                self.depth_adapter = GlobalViewAdapter(num_views, feature_dim, hidden_dim, dropout=dropout)
        if variant == "gated":
            # shape (1,): OpenPoints' optimizer factory exempts 1-d parameters from weight decay
            self.gate = nn.Parameter(torch.full((1,), float(gate_init)))
        fixed = parse_logit_scale(logit_scale)
        if fixed is None:  # learned as a log, so s stays positive; shape (1,): no weight decay
            self.log_logit_scale = nn.Parameter(torch.zeros(1))
        else:
            self.register_buffer("logit_scale", torch.tensor(fixed))
        self.register_buffer("text_features", torch.zeros(int(num_classes or 0), self.feature_dim))

    @property
    def scale(self) -> torch.Tensor:
        """The scale s of Eq. 14's cosine logits (a 0-dim tensor; in the graph when learnable)."""
        if hasattr(self, "log_logit_scale"):
            return self.log_logit_scale.exp()[0]
        return self.logit_scale

    @torch.no_grad()
    def set_text_features(self, text_features: torch.Tensor) -> None:
        """Fix the class text features (C, D); they are L2-normalised and never trained."""
        if text_features.dim() != 2 or text_features.shape[1] != self.feature_dim:
            raise BadInputError(f"Text features of shape {tuple(text_features.shape)} do not match "
                                f"feature_dim={self.feature_dim}: set model.feature_dim to the CLIP embedding size.")
        self.text_features = F.normalize(text_features.detach().float(), dim=-1).to(self.text_features.device)

    def _check(self, features: Optional[torch.Tensor], path: str) -> torch.Tensor:
        expected = (self.num_views, self.feature_dim)
        if features is None or features.dim() != 3 or tuple(features.shape[1:]) != expected:
            shape = None if features is None else tuple(features.shape)
            raise BadInputError(f"The {path} path features have shape {shape}, expected (B, {expected[0]}, "
                                f"{expected[1]}): set model.num_views and model.feature_dim to the renderer's "
                                f"view count and the encoders' embedding size.")
        return features

    def adapt_views(self, depth: torch.Tensor) -> torch.Tensor:
        """``inter_view``: the adapted view features f'_v = f_v + ratio * ReLU(W_v g), (B, V, D)."""
        views = self._check(depth, "depth")
        residual = F.relu(self.view_residual(self.depth_adapter(views))).view_as(views)
        return views + self.inter_view_ratio * residual

    def fuse(self, depth: Optional[torch.Tensor], clip: Optional[torch.Tensor]) -> torch.Tensor:
        """The fused global feature G (B, D) of the gated, dual and single-path variants from view features (B, V, D).

        ``inter_view`` scores views one by one (Eq. 4) and has no single G: use :meth:`adapt_views`.
        """
        if self.variant == "inter_view":
            raise BadInputError("The inter_view variant has no fused global feature: call adapt_views for its "
                                "per-view features, or forward for its logits.")
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
        if self.variant == "inter_view":
            cosines = F.normalize(self.adapt_views(depth), dim=-1) @ self.text_features.t()   # (B, V, C)
            # Eq. 4: logits = sum_v alpha_v cos(f'_v, T), with learnable view weights alpha
            return self.scale * torch.einsum("v,bvc->bc", self.view_weights, cosines)
        fused = F.normalize(self.fuse(depth, clip), dim=-1)
        return self.scale * fused @ self.text_features.t()  # Eq. 14: s * cos(G, T), s = 1 by default
