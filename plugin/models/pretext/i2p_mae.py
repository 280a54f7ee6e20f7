"""I2P-MAE: masked point modelling guided by a frozen 2D teacher (Zhang et al., CVPR 2023).

One step on a batch of clouds ``pos`` (B, P, 3):

1. the cloud is rendered into I2P-MAE's three orthographic depth views, which the frozen teacher turns into
   patch features and a saliency map per view (:mod:`plugin.render.orthographic_views`);
2. the spatial attention cloud S: every coarsest token reads the saliency at its centre's pixel in each
   view, aggregated over the views (Sec. 3.2);
3. 2D-guided masking keeps ``G - round(mask_ratio * G)`` tokens visible, drawn without replacement from
   ``softmax(S / T)`` (Sec. 3.2); ``guided: False`` is the random-masking ablation;
4. the Point-M2AE encoder sees the visible tokens, its decoder predicts every token of the target scale
   (the second, 256 tokens); each target token's patch is its ``patch_size`` nearest first-scale centres;
5. masked tokens reconstruct their patch's coordinates relative to the token centre (Chamfer-L2), visible
   tokens the teacher's features at their patch's pixels in each view (MSE on raw features) (Sec. 3.3).

The exported ``encoder`` is the encoder alone, the final ``norm`` of its last stage included (it is the
encoder's ``norm`` and loads into ``BaseCls.encoder.norm``); decoder, mask token and heads stay behind.
"""
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from openpoints.models.build import MODELS, build_model_from_cfg
from torch import Tensor, nn

from ...errors import ConfigError
from ...losses.chamfer import chamfer_l2
from ...ops import pointnet2_utils
from ...render.orthographic_views import point_pixels, read_maps, render_orthographic_views
from ..backbones.image_teachers import ImageTeacher, build_teacher
from ..backbones.masking import masked_count, random_token_mask
from ..backbones.point_m2ae import PointM2AEEncoder, TokenScale, index_rows
from ..backbones.point_m2ae_decoder import PointM2AEDecoder
from ..base import ParamGroup, PretextModel, reject_unknown_keys

SWITCHES = ("encoder_args", "teacher", "decoder_args", "mask_ratio", "guided", "temperature", "normalize_saliency",
            "saliency_aggregation", "patch_size", "use_2d_targets", "num_views", "target_views", "loss_weights",
            "augment_scale", "augment_translate")
AGGREGATIONS = ("mean", "max", "min")
SALIENCY_NORMS = ("none", "zscore")
TARGET_VIEWS = ("concat", "mean")


def attention_cloud(saliency: Tensor, pixels: Tensor, size: int, aggregation: str = "mean") -> Tensor:
    """The spatial attention cloud S (B, G): saliency read at each token centre's pixel, aggregated over views.

    Args:
        saliency: (B, V, h, w) teacher saliency per view.
        pixels: (B, V, G, 2) int64 (row, column) of the token centres in each view (:func:`point_pixels`).
        size: image side the pixels refer to (the maps are upsampled bicubically to it, as upstream).
        aggregation: ``mean``, ``max`` or ``min`` over the V views.
    """
    per_view = read_maps(saliency.unsqueeze(2), pixels, size)[..., 0]  # (B, V, G)
    if aggregation == "mean":
        return per_view.mean(dim=1)
    return per_view.amax(dim=1) if aggregation == "max" else per_view.amin(dim=1)


def masking_distribution(scores: Tensor, temperature: float = 1.0, normalize: str = "none") -> Tensor:
    """p = softmax(S / T) over the tokens (B, G), S optionally z-scored per sample first.

    Args:
        scores: (B, G) attention cloud S.
        temperature: T > 0; small T concentrates p on the most salient tokens.
        normalize: ``none`` (upstream) or ``zscore`` (per-sample zero mean, unit standard deviation).
    """
    if normalize == "zscore":
        scores = (scores - scores.mean(dim=1, keepdim=True)) / scores.std(dim=1, keepdim=True).clamp_min(1e-6)
    return torch.softmax(scores / temperature, dim=1)


def guided_token_mask(probs: Tensor, ratio: float) -> Tensor:
    """2D-guided mask (B, G), ``True`` = masked: visible tokens drawn from ``probs`` without replacement.

    Args:
        probs: (B, G) sampling distribution of the visible tokens (:func:`masking_distribution`).
        ratio: fraction of masked tokens; ``G - round(ratio * G)`` stay visible. Draws use torch's global RNG.
    """
    batch, tokens = probs.shape
    visible = torch.multinomial(probs.float(), tokens - masked_count(tokens, ratio), replacement=False)
    return torch.ones(batch, tokens, dtype=torch.bool, device=probs.device).scatter(1, visible, False)


def patch_offsets(fine: Tensor, target: TokenScale, patch: Tensor) -> Tensor:
    """3D targets (B, N, k, 3): each target token's patch members (finer centres) relative to its centre.

    Args:
        fine: (B, M, 3) centres of the scale below the target scale.
        target: the target scale.
        patch: (B, N, k) int64 indices of each target token's patch members in ``fine``.
    """
    return index_rows(fine, patch) - target.centers.unsqueeze(2)


def semantic_targets(member_features: Tensor, patch: Tensor, views: str = "concat") -> Tensor:
    """2D targets (B, N, k * V * C) (``concat``) or (B, N, k * C) (``mean``), in (member, view, channel) order.

    Args:
        member_features: (B, V, M, C) teacher features at the pixels of the finer centres in each view.
        patch: (B, N, k) int64 indices of each target token's patch members.
        views: ``concat`` the V views' features or take their ``mean``.
    """
    b, v, m, c = member_features.shape
    per_member = member_features.permute(0, 2, 1, 3).reshape(b, m, v * c)
    target = index_rows(per_member, patch).view(*patch.shape, v, c)  # (B, N, k, V, C)
    if views == "mean":
        target = target.mean(dim=3)
    return target.flatten(2)


def _choice(value: Any, allowed: Sequence[str], key: str) -> str:
    if value not in allowed:
        raise ConfigError(f"model.{key} is '{value}': set it to one of {', '.join(allowed)}.")
    return value


class Reconstruction(NamedTuple):
    """:meth:`I2PMAE.reconstruct`'s output at the target scale (N tokens, patches of k members)."""

    decoded: Tensor       # (B, C, N) decoder features
    target: TokenScale    # the target scale's centres (B, N, 3) and neighbourhoods
    fine: Tensor          # (B, M, 3) centres of the scale below, the patch members
    patch: Tensor         # (B, N, k) int64 members of each token's patch
    visible: Tensor       # (B, N) bool, the tokens the encoder saw
    pred_3d: Tensor       # (B, N, k, 3) predicted members, relative to the token centre


@MODELS.register_module()
class I2PMAE(PretextModel):
    """I2P-MAE pre-training of a :class:`PointM2AEEncoder` (Zhang et al., CVPR 2023, Secs. 3.2-3.3).

    A batch needs ``pos`` (B, P, 3) only: the views are rendered from it. ``forward`` returns ``(loss, logs)``
    with ``loss_3d``, ``loss_2d`` and ``mask_entropy`` (the entropy of p, nats, batch mean) in the logs.

    Args:
        encoder_args: a ``PointM2AEEncoder`` config (``NAME`` included).
        teacher: :func:`build_teacher` block, e.g. ``{NAME: clip_vit, name: ViT-B-16, pretrained: <path>}``;
            needed when ``guided`` or ``use_2d_targets``.
        decoder_args: :class:`PointM2AEDecoder` arguments; default dims = the encoder's two last widths
            reversed, depths (1, 1), the encoder's heads. ``len(dims)`` sets the target scale.
        mask_ratio: fraction of masked coarsest tokens (0.8: 13 of 64 visible).
        guided: 2D-guided masking; False: uniformly random masking (ablation).
        temperature: T of p = softmax(S / T); 1 as upstream (nearly uniform for CLIP's small saliencies).
        normalize_saliency: ``none`` (upstream) or ``zscore`` S per sample before the softmax.
        saliency_aggregation: S over the views: ``mean`` (upstream), ``max`` or ``min``.
        patch_size: k, the finer centres per target token's patch (8).
        use_2d_targets: add the 2D-semantic reconstruction of visible tokens.
        num_views: how many of the three orthographic views (in order) the teacher sees, 1 to 3.
        target_views: 2D targets of the views ``concat`` (default) or their ``mean``.
        loss_weights: (w3d, w2d) of L = w3d * L3D + w2d * L2D.
        augment_scale: (low, high) of a per-axis random scale in training (I2P-MAE: 2/3, 3/2); None: off.
        augment_translate: per-axis random translation in [-t, t] in training (I2P-MAE: 0.2); 0: off.
        **kwargs: nothing else is accepted: an unknown key (a mistyped ablation switch) is an error.

    Raises:
        ConfigError: an unknown key, an encoder other than ``PointM2AEEncoder``, or an invalid option.
    """

    exports = "encoder"

    def __init__(self, encoder_args: Dict[str, Any], teacher: Optional[Dict[str, Any]] = None,
                 decoder_args: Optional[Dict[str, Any]] = None, mask_ratio: float = 0.8, guided: bool = True,
                 temperature: float = 1.0, normalize_saliency: str = "none", saliency_aggregation: str = "mean",
                 patch_size: int = 8, use_2d_targets: bool = True, num_views: int = 3, target_views: str = "concat",
                 loss_weights: Sequence[float] = (1.0, 1.0), augment_scale: Optional[Sequence[float]] = None,
                 augment_translate: float = 0.0, **kwargs: Any):
        super().__init__()
        reject_unknown_keys(kwargs, SWITCHES, "model", "I2PMAE")
        if encoder_args.get("NAME") != "PointM2AEEncoder":
            raise ConfigError(f"I2PMAE pre-trains a PointM2AEEncoder, not '{encoder_args.get('NAME')}': set "
                              f"model.encoder_args.NAME to PointM2AEEncoder.")
        if not 1 <= num_views <= 3 or temperature <= 0 or patch_size < 1 or len(loss_weights) != 2:
            raise ConfigError("model.num_views must be 1-3, model.temperature > 0, model.patch_size >= 1 and "
                              "model.loss_weights two numbers (w3d, w2d): fix the one that is not.")
        self.normalize_saliency = _choice(normalize_saliency, SALIENCY_NORMS, "normalize_saliency")
        self.saliency_aggregation = _choice(saliency_aggregation, AGGREGATIONS, "saliency_aggregation")
        self.target_views = _choice(target_views, TARGET_VIEWS, "target_views")
        masked_count(int(encoder_args.get("num_tokens", (512, 256, 64))[-1]), mask_ratio)  # validates the ratio
        self.encoder_args = dict(encoder_args)
        self.encoder: PointM2AEEncoder = build_model_from_cfg(encoder_args)
        encoder_dims = [int(mlp[-1].out_features) for mlp in self.encoder.pos_embed]
        decoder_args = {"dims": encoder_dims[::-1][:2], "depths": (1, 1),
                        "num_heads": int(encoder_args.get("num_heads", 6)), **(decoder_args or {})}
        self.decoder = PointM2AEDecoder(encoder_dims=encoder_dims, **decoder_args)
        self.target_stage = len(encoder_dims) - len(decoder_args["dims"])
        if self.target_stage < 1:
            raise ConfigError("The decoder reaches the finest scale, which has no finer centres to reconstruct: "
                              "give model.decoder_args.dims fewer entries than the encoder has stages.")
        self.mask_ratio, self.guided, self.temperature = mask_ratio, guided, temperature
        self.patch_size, self.use_2d_targets, self.num_views = patch_size, use_2d_targets, num_views
        self.w3d, self.w2d = (float(w) for w in loss_weights)
        self.augment_scale = tuple(augment_scale) if augment_scale else None
        self.augment_translate = float(augment_translate)
        self.teacher: Optional[ImageTeacher] = None
        if guided or use_2d_targets:
            if teacher is None:
                raise ConfigError("I2PMAE needs model.teacher for guided masking or 2D targets: set it, e.g. "
                                  "{NAME: clip_vit, name: ViT-B-16, pretrained: weights/ViT-B-16.pt}.")
            self.teacher = build_teacher(teacher)
        width = int(decoder_args["dims"][-1])
        self.head_3d = nn.Conv1d(width, patch_size * 3, 1)
        self.head_2d = None
        if use_2d_targets:
            views = num_views if self.target_views == "concat" else 1
            self.head_2d = nn.Conv1d(width, patch_size * views * self.teacher.feature_dim, 1)

    def param_groups(self) -> List[ParamGroup]:
        """Biases and 1-D parameters (norms) without weight decay, as upstream's ``add_weight_decay``."""
        no_decay = [p for name, p in self.named_parameters()
                    if p.requires_grad and (p.ndim <= 1 or name.endswith(".bias"))]
        return [ParamGroup("no_decay", no_decay, weight_decay_scale=0.0)]

    def export_state(self) -> Dict[str, Any]:
        """``encoder`` (the ``PointM2AEEncoder`` state dict, loadable into ``BaseCls.encoder``) and ``encoder_args``."""
        return {"encoder": self.encoder.state_dict(), "encoder_args": dict(self.encoder_args)}

    def augment(self, pos: Tensor) -> Tensor:
        """Random per-axis scale and translation of each cloud in training (``PointcloudScaleAndTranslate``)."""
        if not self.training:
            return pos
        b = pos.shape[0]
        if self.augment_scale is not None:
            low, high = self.augment_scale
            pos = pos * (low + (high - low) * torch.rand(b, 1, 3, device=pos.device, dtype=pos.dtype))
        if self.augment_translate > 0:
            pos = pos + self.augment_translate * (2 * torch.rand(b, 1, 3, device=pos.device, dtype=pos.dtype) - 1)
        return pos

    @torch.no_grad()
    def teach(self, pos: Tensor, scales: Sequence[TokenScale]) -> Dict[str, Tensor]:
        """Teacher readings: ``saliency`` S (B, G) at the coarsest centres and ``features`` (B, V, M, C) at the
        centres of the scale below the target scale, M of them; nothing trains here."""
        images, grid = render_orthographic_views(pos, size=self.teacher.image_size)  # 224 for ViT-B/16, as upstream
        size, v = grid.size, self.num_views
        images = images[:, :v].flatten(0, 1)
        out = self.teacher(self.teacher.normalize(images))
        b = pos.shape[0]
        features = out.features.view(b, v, *out.features.shape[1:])
        saliency = out.saliency.view(b, v, *out.saliency.shape[1:])
        coarse = point_pixels(scales[-1].centers, grid)[:, :v]
        members = point_pixels(scales[self.target_stage - 1].centers, grid)[:, :v]
        return {"saliency": attention_cloud(saliency, coarse, size, self.saliency_aggregation),
                "features": read_maps(features, members, size)}

    def token_mask(self, saliency: Optional[Tensor], batch: int, tokens: int, device: torch.device
                   ) -> Tuple[Tensor, Tensor]:
        """``(mask (B, G) True = masked, p (B, G))``: 2D-guided, or uniformly random without guidance."""
        if not self.guided:
            return (random_token_mask(batch, tokens, self.mask_ratio, device=device),
                    torch.full((batch, tokens), 1.0 / tokens, device=device))
        probs = masking_distribution(saliency, self.temperature, self.normalize_saliency)
        return guided_token_mask(probs, self.mask_ratio), probs

    def reconstruct(self, pos: Tensor, scales: List[TokenScale], mask: Tensor) -> Reconstruction:
        """Encode ``pos`` under ``mask`` (B, G) at the coarsest scale, decode to the target scale and predict each
        target token's patch (its ``patch_size`` nearest centres of the scale below) relative to its centre."""
        outputs = self.encoder(pos, mask, scales)
        decoded = self.decoder(outputs).transpose(1, 2)  # (B, C, N) at the target scale
        target, fine = scales[self.target_stage], scales[self.target_stage - 1].centers
        _, patch = pointnet2_utils.knn(target.centers.contiguous(), fine.contiguous(), self.patch_size)
        b, n = patch.shape[:2]
        pred_3d = self.head_3d(decoded).transpose(1, 2).reshape(b, n, self.patch_size, 3)
        return Reconstruction(decoded, target, fine, patch.long(), outputs[self.target_stage].visible, pred_3d)

    def forward(self, batch: Dict[str, Tensor]) -> Tuple[Tensor, Dict[str, float]]:
        pos = self.augment(batch["pos"].float())
        scales = self.encoder.tokenize(pos)
        readings = self.teach(pos, scales) if self.teacher is not None else {}
        b, g = scales[-1].centers.shape[:2]
        mask, probs = self.token_mask(readings.get("saliency"), b, g, pos.device)
        decoded, target, fine, patch, visible, pred_3d = self.reconstruct(pos, scales, mask)
        # Sec. 3.3, 3D targets: Chamfer-L2 between predicted and true relative coordinates of masked tokens' patches
        loss_3d = chamfer_l2(pred_3d[~visible], patch_offsets(fine, target, patch)[~visible])
        loss = self.w3d * loss_3d
        logs = {"loss_3d": loss_3d.item()}
        if self.head_2d is not None:
            # Sec. 3.3, 2D targets: MSE between predicted and teacher features of visible tokens' patches
            pred_2d = self.head_2d(decoded).transpose(1, 2)
            target_2d = semantic_targets(readings["features"], patch, self.target_views)
            loss_2d = F.mse_loss(pred_2d[visible], target_2d[visible])
            loss = loss + self.w2d * loss_2d
            logs["loss_2d"] = loss_2d.item()
        entropy = -(probs * probs.clamp_min(1e-30).log()).sum(dim=1).mean()
        logs.update(loss=loss.item(), mask_entropy=entropy.item())
        return loss, logs

    @torch.no_grad()
    def explain(self, pos: Tensor) -> Dict[str, Tensor]:
        """What one pre-training step masks and reconstructs, for figures (I2P-MAE supplementary Fig. 5).

        No augmentation and no loss; call it in eval mode. Both masks draw from torch's global RNG.

        Args:
            pos: (B, P, 3) clouds.

        Returns:
            ``centers`` (B, G, 3) coarsest token centres; ``saliency`` (B, G) the attention cloud S (zeros without
            a teacher); ``random_mask`` and ``guided_mask`` (B, G), ``True`` = masked: uniformly random and the
            model's own (2D-guided unless ``guided: False``); ``patch_centers`` (B, N, 3) target-scale centres;
            ``target_visible`` (B, N) the target tokens the encoder saw under ``guided_mask``; ``patches``
            (B, N, k, 3) absolute coordinates: the predicted patch at masked target tokens, the true one at visible.
        """
        pos = pos.float()
        scales = self.encoder.tokenize(pos)
        centers = scales[-1].centers
        b, g = centers.shape[:2]
        saliency = self.teach(pos, scales)["saliency"] if self.teacher is not None else None
        random_mask = random_token_mask(b, g, self.mask_ratio, device=pos.device)
        guided_mask, _ = self.token_mask(saliency, b, g, pos.device)
        _, target, fine, patch, visible, pred_3d = self.reconstruct(pos, scales, guided_mask)
        predicted = pred_3d + target.centers.unsqueeze(2)  # Sec. 3.3: offsets relative to the token centre
        patches = torch.where(visible[..., None, None], index_rows(fine, patch), predicted)
        return {"centers": centers, "saliency": saliency if saliency is not None else centers.new_zeros(b, g),
                "random_mask": random_mask, "guided_mask": guided_mask, "patch_centers": target.centers,
                "target_visible": visible, "patches": patches}
