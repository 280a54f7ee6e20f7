"""Cross-MoST (Dharmasiri et al., "Cross-Modal Self-Training: Aligning Images and Pointclouds to learn Classification
without Labels"): a zero-shot 3D classifier adapted to unlabelled image-point pairs by self-training.

The student holds an image tower with its projection f^I (:mod:`..backbones.maskable_image`), a point encoder with
its projection f^P (initialised from a :class:`.clip_align.CLIPAlign` export, ULIP-style), and one classifier Q
(C x D) shared by both branches, initialised from CLIP text embeddings of the class names (or, where no CLIP exists,
from the embeddings of a few labelled examples: :meth:`CrossMoST.init_classifier`). Logits are
exp(s) * normalize(f(x)) Q^T. An EMA copy of the whole student, the teacher (held by the runner), labels each pair
of weak inputs; the student learns from the labels on strong, masked inputs (:meth:`CrossMoST.forward`):

    L = w_cls L_cls + w_fair L_fair + w_align L_align + w_mim L_mim + w_mpm L_mpm + w_gl (GL_img + GL_pcl)

with the weights of ``model.weights`` (all 1 and w_gl = 0.2, the paper's and MUST's). The switches of the paper's
ablations (Tabs. 2-4): ``pseudo_labels`` (:data:`plugin.losses.self_training.SOURCES`), ``align``,
``masked_modelling``, ``fairness`` and, in the runner, ``init``.
"""
import logging
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from openpoints.models.build import MODELS, build_model_from_cfg
from openpoints.utils import EasyConfig
from torch import nn

from ...clip import ClipModel, load_clip_from_cfg, resolve_templates, text_classifier
from ...clip.prompts import TemplateSpec
from ...errors import BadInputError, ConfigError
from ...losses import global_weighted_contrastive
from ...losses.self_training import (SOURCES, fairness_loss, global_local_alignment, masked_cross_entropy,
                                     masked_pixel_l1, masked_token_l1, pseudo_labels)
from ..backbones.maskable_image import ClipViTTower, build_image_tower
from ..backbones.masking import block_token_mask, random_token_mask
from ..backbones.point_vit import PointViTEncoder
from ..base import Batch, ParamGroup, PretextModel, plain_config, reject_unknown_keys
from .clip_align import MAX_LOGIT_SCALE, resolve_class_names

LOGGER = logging.getLogger("plugin")
PAPER_TEMPLATES = ("a photo of a {}.", "a 3D model of a {}.")
MASKED_MODELLING = (True, False, "image", "point")
ALIGN_REDUCTIONS = ("mean", "sum")
WEIGHT_KEYS = ("cls", "fair", "align", "mim", "mpm", "gl")
DEFAULT_WEIGHTS = {"cls": 1.0, "fair": 1.0, "align": 1.0, "mim": 1.0, "mpm": 1.0, "gl": 0.2}  # the paper's L
CLASSIFIER_INITS = ("text", "examples")
SWITCHES = ("encoder_args", "image_encoder", "class_names", "classifier_init", "templates", "clip", "pseudo_labels",
            "threshold", "point_weight", "align", "align_temperature", "align_reduction", "masked_modelling",
            "image_mask_ratio", "point_mask_ratio", "fairness", "weights", "logit_scale_init", "layer_decay",
            "freeze_tokenizer", "freeze_batchnorm", "init")
INITS = ("aligned", "random")


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} is {value!r}: set it to true or false.")
    return value


@MODELS.register_module()
class CrossMoST(PretextModel):
    """The Cross-MoST student (see the module docstring); ``mode=selftrain`` trains it with an EMA teacher.

    A training batch holds ``img_weak``/``img_strong`` (B,3,S,S) in [0, 1], ``pos_weak``/``pos_strong`` (B,N,3) and,
    only to log pseudo-label accuracy, ``y``; :meth:`forward` takes the teacher besides the batch.

    Args:
        encoder_args: the point encoder, any OpenPoints encoder with ``forward_cls_feat`` (ULIP's Point-BERT:
            ``PointViTEncoder``, needed for masked point modelling; it gets a [MASK] token here).
        image_encoder: the trainable image tower (:func:`~..backbones.maskable_image.build_image_tower`): an open_clip
            ViT (the paper's ViT-B/16) or a timm CNN such as the offline EfficientNet-Lite0.
        class_names: the C class names in label order (a list or a JSON file); the runner fills them from the data.
        classifier_init: ``text`` (CLIP text embeddings of the names, averaged over ``templates``) or ``examples``
            (:meth:`init_classifier` with embeddings of labelled examples, where no CLIP text tower exists).
        templates: prompt templates for ``text``; default the paper's two, or e.g. ULIP's set
            ``../shared/data/text/ulip_templates.json:modelnet40_64``.
        clip: ``{name, pretrained}`` of the CLIP whose text tower encodes the names, when the image tower is no CLIP.
        pseudo_labels: ``joint`` (the paper), ``own`` (each branch its own: MUST's baseline self-training),
            ``image``, ``point`` or ``random``.
        threshold: T, the confidence a pseudo-label must exceed (0.84 in the release for ModelNet, 0.82 for
            ScanObjectNN).
        point_weight: w in r_b = max(s_img, w s_pcl) (1 in the paper, 0.9 in the release for ModelNet).
        align: the image-point contrastive loss L_align (Eq. 3).
        align_temperature: tau of L_align (the release uses 1).
        align_reduction: ``mean`` of the two directions (the paper's 1/2) or their ``sum`` (the release).
        masked_modelling: MIM and MPM with their global-local alignment; ``image`` or ``point`` for one branch only.
        image_mask_ratio: the share of image patches masked (0.3).
        point_mask_ratio: [low, high]: the share of point tokens block-masked, drawn per batch (0.3-0.4).
        fairness: the fairness regulariser L_fair (Eq. 4).
        weights: the loss weights ``{cls, fair, align, mim, mpm, gl}``.
        logit_scale_init: exp(s_0); None: the CLIP's (100 for OpenAI CLIP), or for a timm tower the aligned
            checkpoint's (:meth:`load_alignment`), else 100.
        layer_decay: the image tower's layer-wise lr decay per block (0.65 in the release).
        freeze_tokenizer: keep the point tokenizer frozen (the release).
        freeze_batchnorm: keep every BatchNorm of the student in eval mode (running statistics frozen, affine weights
            trained): the paper's towers (ViT, Point-BERT) have LayerNorms only; a CNN or PointNeXt stand-in would
            otherwise shift its statistics to the strong, masked inputs, away from the weak ones the teacher sees.
        init: ``aligned`` (the point branch from ``pretrained_path``, a CLIPAlign export) or ``random``.
        **kwargs: nothing else is accepted: an unknown key is an error.
    """

    exports = "encoder"

    def __init__(self, encoder_args: Dict[str, Any], image_encoder: Dict[str, Any], class_names: Any = None,
                 classifier_init: str = "text", templates: TemplateSpec = PAPER_TEMPLATES,
                 clip: Optional[Dict[str, Any]] = None, pseudo_labels: str = "joint", threshold: float = 0.84,
                 point_weight: float = 1.0, align: bool = True, align_temperature: float = 0.07,
                 align_reduction: str = "mean", masked_modelling: Union[bool, str] = True,
                 image_mask_ratio: float = 0.3, point_mask_ratio: Sequence[float] = (0.3, 0.4), fairness: bool = True,
                 weights: Optional[Mapping[str, float]] = None, logit_scale_init: Optional[float] = None,
                 layer_decay: float = 0.65, freeze_tokenizer: bool = True, freeze_batchnorm: bool = True,
                 init: str = "aligned", **kwargs: Any):
        super().__init__()
        reject_unknown_keys(kwargs, SWITCHES, "model", "CrossMoST")
        self._check_choices(pseudo_labels, align_reduction, masked_modelling, classifier_init, init)
        self.source, self.threshold, self.point_weight = pseudo_labels, float(threshold), float(point_weight)
        self.align, self.fairness = _flag(align, "model.align"), _flag(fairness, "model.fairness")
        self.align_temperature, self.align_reduction = float(align_temperature), align_reduction
        if not self.align_temperature > 0:
            raise ConfigError(f"model.align_temperature is {align_temperature}: set it to a positive tau, e.g. 0.07.")
        self.weights = self._weights(weights)
        self.image_mask_ratio = float(image_mask_ratio)
        self.point_mask_ratio = self._ratio_range(point_mask_ratio)
        self.layer_decay, self.classifier_init, self.init = float(layer_decay), classifier_init, init
        self.freeze_batchnorm = _flag(freeze_batchnorm, "model.freeze_batchnorm")
        self.class_names = resolve_class_names(class_names) if class_names is not None else None
        if self.class_names is None:
            raise ConfigError("CrossMoST needs model.class_names: set them in label order, or let mode=selftrain take "
                              "them from the dataset.")
        self.encoder_args = encoder_args
        self.image, clip_model = build_image_tower(image_encoder)
        self.image_encoder_cfg = plain_config(image_encoder)
        self.dim = self.image.dim
        self.encoder = self._point_encoder(encoder_args)
        if freeze_tokenizer and isinstance(self.encoder, PointViTEncoder):
            self.encoder.tokenizer.requires_grad_(False)
        self.projection = nn.Linear(self._global_channels(), self.dim)                       # f^P
        self.mim = masked_modelling in (True, "image")
        self.mpm = masked_modelling in (True, "point")
        if self.mpm and not isinstance(self.encoder, PointViTEncoder):
            raise ConfigError(f"Masked point modelling needs a token encoder (encoder_args.NAME: PointViTEncoder), not "
                              f"{encoder_args.get('NAME')}: set model.masked_modelling to image or false.")
        self.image_decoder = nn.Sequential(nn.Conv2d(self.image.width, 3 * self.image.patch ** 2, 1),
                                           nn.PixelShuffle(self.image.patch)) if self.mim else None
        self.point_decoder = nn.Linear(self.encoder.embed_dim, self.encoder.embed_dim) if self.mpm else None
        if not self.mim:                      # an unused [MASK] would stall DDP's gradient reduction
            self.image.mask_token.requires_grad_(False)
        if not self.mpm and isinstance(self.encoder, PointViTEncoder):
            self.encoder.mask_token.requires_grad_(False)
        self.classifier = nn.Parameter(torch.zeros(len(self.class_names), self.dim))            # Q (C, D)
        self.logit_scale_given = logit_scale_init is not None
        scale = logit_scale_init if logit_scale_init is not None else \
            (float(clip_model.model.logit_scale.exp()) if clip_model is not None else MAX_LOGIT_SCALE)
        if not 0 < float(scale) <= MAX_LOGIT_SCALE:
            raise ConfigError(f"model.logit_scale_init is {scale}: set it to exp(s_0) in (0, 100].")
        self.logit_scale = nn.Parameter(torch.tensor(math.log(float(scale))))                   # s
        if classifier_init == "text":
            self._init_from_text(clip_model if clip is None else load_clip_from_cfg(clip, key="model.clip"),
                                 resolve_templates(templates, "model.templates"))

    # ---- construction ----

    @staticmethod
    def _check_choices(source: str, reduction: str, masked: Any, classifier_init: str, init: str) -> None:
        for key, value, choices in (("pseudo_labels", source, SOURCES),
                                    ("align_reduction", reduction, ALIGN_REDUCTIONS),
                                    ("masked_modelling", masked, MASKED_MODELLING),
                                    ("classifier_init", classifier_init, CLASSIFIER_INITS), ("init", init, INITS)):
            if value not in choices or (key == "masked_modelling" and isinstance(value, int) and
                                        not isinstance(value, bool)):
                raise ConfigError(f"model.{key} is {value!r}: set it to one of {', '.join(map(str, choices))}.")

    @staticmethod
    def _weights(weights: Optional[Mapping[str, float]]) -> Dict[str, float]:
        weights = dict(weights or {})
        reject_unknown_keys(weights, WEIGHT_KEYS, "model.weights", "CrossMoST")
        merged = {**DEFAULT_WEIGHTS, **{k: float(v) for k, v in weights.items()}}
        if any(not v >= 0 for v in merged.values()):
            raise ConfigError(f"model.weights holds a negative or NaN weight ({merged}): set every weight >= 0.")
        return merged

    @staticmethod
    def _ratio_range(ratio: Sequence[float]) -> Tuple[float, float]:
        low, high = (float(ratio), float(ratio)) if isinstance(ratio, (int, float)) else map(float, ratio)
        if not 0 <= low <= high < 1:
            raise ConfigError(f"model.point_mask_ratio is {ratio}: set it to [low, high] with 0 <= low <= high < 1.")
        return low, high

    @staticmethod
    def _point_encoder(encoder_args: Dict[str, Any]) -> nn.Module:
        args = EasyConfig()                      # OpenPoints encoders read nested blocks by attribute
        args.update(encoder_args)
        if args.get("NAME") == "PointViTEncoder":
            args["mask_token"] = True            # MPM's [MASK]; an aligned checkpoint without one still loads
        return build_model_from_cfg(args)

    def _global_channels(self) -> int:
        was = self.encoder.training
        self.encoder.eval()
        with torch.no_grad():
            pos = torch.rand(1, 256, 3)
            channels = self.encoder.forward_cls_feat({"pos": pos, "x": pos.transpose(1, 2).contiguous()}).shape[1]
        self.encoder.train(was)
        return int(channels)

    def _init_from_text(self, clip: Optional[ClipModel], templates: List[str]) -> None:
        if clip is None:
            raise ConfigError("model.classifier_init=text needs a CLIP text tower: use a clip image tower, set "
                              "model.clip to {name, pretrained}, or set model.classifier_init=examples.")
        if clip.embed_dim != self.dim:
            raise ConfigError(f"The text tower of {clip.name} gives {clip.embed_dim}-d embeddings, not the image "
                              f"tower's {self.dim}: set model.clip to the CLIP of the image tower.")
        with torch.no_grad():
            self.classifier.copy_(text_classifier(clip, self.class_names, templates).float().cpu())
        LOGGER.info(f"classifier Q: CLIP {clip.name} text embeddings of {len(self.class_names)} classes x "
                    f"{len(templates)} templates")

    def init_classifier(self, embeddings: torch.Tensor) -> None:
        """Set Q to ``embeddings`` (C, D), L2-normalised per class (``classifier_init: examples``)."""
        if embeddings.shape != self.classifier.shape:
            raise BadInputError(f"The classifier needs ({len(self.class_names)}, {self.dim}) class embeddings, got "
                                f"{tuple(embeddings.shape)}.")
        with torch.no_grad():
            self.classifier.copy_(F.normalize(embeddings.float(), dim=-1))

    def load_alignment(self, state: Mapping[str, Any], path: str, key: str = "pretrained_path") -> None:
        """The point encoder, f^P (and, unless ``logit_scale_init`` is set and for a timm tower, the temperature) of a
        :class:`CLIPAlign` export (``init: aligned``)."""
        missing = [k for k in ("encoder", "projection") if k not in state]
        if missing:
            raise ConfigError(f"{path} has no {', '.join(missing)} entry: set {key} to the ckpt_best.pth of a "
                              f"CLIPAlign alignment run (e.g. cfgs/shapenet/clip_align-ulip.yaml).")
        try:
            result = self.encoder.load_state_dict(state["encoder"], strict=False)
            self.projection.load_state_dict(state["projection"], strict=True)
        except RuntimeError as err:
            raise ConfigError(f"The alignment export in {path} does not fit this model ({str(err).splitlines()[0]}): "
                              f"set model.encoder_args to those of its run.") from err
        wrong = [k for k in result.missing_keys if k != "mask_token"] + list(result.unexpected_keys)
        if wrong:
            raise ConfigError(f"The alignment export in {path} does not fit model.encoder_args ({len(wrong)} tensors "
                              f"differ, e.g. {wrong[0]}): set model.encoder_args to those of its run.")
        if "logit_scale" in state and not self.logit_scale_given and not isinstance(self.image, ClipViTTower):
            with torch.no_grad():
                self.logit_scale.copy_(torch.as_tensor(state["logit_scale"]).reshape(()))
        LOGGER.info(f"point branch (encoder and f^P) from {path}")

    def train(self, mode: bool = True) -> "CrossMoST":
        """Train mode, with the BatchNorm layers left in eval mode under ``freeze_batchnorm``."""
        super().train(mode)
        if mode and self.freeze_batchnorm:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    # ---- embeddings and predictions ----

    def scale(self) -> torch.Tensor:
        """exp(s), clamped at 100."""
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def logits(self, embedding: torch.Tensor) -> torch.Tensor:
        """exp(s) normalize(f(x)) Q^T (B, C), in float32."""
        return self.scale() * F.normalize(embedding.float(), dim=-1) @ self.classifier.float().t()

    def point_features(self, pos: torch.Tensor, mask: Optional[torch.Tensor] = None):
        """The point encoder on (B, N, 3): ``(f^P of the global feature (B, D), encoded tokens or None)``."""
        if isinstance(self.encoder, PointViTEncoder):
            out = self.encoder.forward_tokens(pos, mask, mode="replace")
            return self.projection(self.encoder.global_feature(out)), out
        features = self.encoder.forward_cls_feat({"pos": pos, "x": pos.transpose(1, 2).contiguous()})
        return self.projection(features), None

    @torch.no_grad()
    def predict(self, batch: Batch) -> Dict[str, torch.Tensor]:
        """Logits (B, C) of ``image`` (``img``), ``image_star`` (embeddings of ``img_views`` (B,V,3,S,S) averaged)
        and ``point`` (``pos``); a key is absent when its input is."""
        out: Dict[str, torch.Tensor] = {}
        if "img" in batch:
            out["image"] = self.logits(self.image(batch["img"]).embedding)
        if "img_views" in batch:
            views = batch["img_views"]
            emb = F.normalize(self.image(views.flatten(0, 1)).embedding.float(), dim=-1)
            out["image_star"] = self.logits(emb.view(views.shape[0], views.shape[1], -1).mean(dim=1))
        if "pos" in batch:
            out["point"] = self.logits(self.point_features(batch["pos"])[0])
        return out

    @torch.no_grad()
    def example_embeddings(self, batch: Batch) -> torch.Tensor:
        """(B, D): per sample the mean of the normalised image (``img``) and point (``pos``) embeddings."""
        image = F.normalize(self.image(batch["img"]).embedding.float(), dim=-1)
        point = F.normalize(self.point_features(batch["pos"])[0].float(), dim=-1)
        return (image + point) / 2

    # ---- the loss ----

    def _masks(self, batch_size: int, device: torch.device) -> Tuple[Optional[torch.Tensor], Any]:
        height, width = self.image.grid
        image_mask = random_token_mask(batch_size, height * width, self.image_mask_ratio,
                                       device=device) if self.mim else None
        low, high = self.point_mask_ratio
        ratio = low + (high - low) * float(torch.rand(()))      # one ratio per batch, 0.3-0.4
        point_mask = (lambda centers: block_token_mask(centers, ratio)) if self.mpm else None
        return image_mask, point_mask

    def forward(self, batch: Batch, teacher: Optional["CrossMoST"] = None) -> Tuple[torch.Tensor, Dict[str, float]]:
        """The loss of one batch of pairs, labelled by ``teacher`` (the EMA model, eval mode, no gradient)."""
        if teacher is None:
            raise ConfigError("CrossMoST trains with an EMA teacher: run it with mode=selftrain.")
        missing = [k for k in ("img_weak", "img_strong", "pos_weak", "pos_strong") if k not in batch]
        if missing:
            raise BadInputError(f"A Cross-MoST batch needs img_weak, img_strong, pos_weak and pos_strong; "
                                f"{', '.join(missing)} missing: use the CrossModalPairs or DepthPairs dataset.")
        with torch.no_grad():
            teacher.eval()
            prob_img = teacher.logits(teacher.image(batch["img_weak"]).embedding).softmax(dim=1)
            prob_pcl = teacher.logits(teacher.point_features(batch["pos_weak"])[0]).softmax(dim=1)
            labels = pseudo_labels(prob_img, prob_pcl, self.source, self.threshold, self.point_weight)
        image_mask, point_mask = self._masks(prob_img.shape[0], prob_img.device)
        img_out = self.image(batch["img_strong"], image_mask)
        pcl_emb, pcl_out = self.point_features(batch["pos_strong"], point_mask)
        logits_img, logits_pcl = self.logits(img_out.embedding), self.logits(pcl_emb)
        terms = {"cls": masked_cross_entropy(logits_img, labels.image, labels.keep_image)      # Eq. 2, both branches
                 + masked_cross_entropy(logits_pcl, labels.point, labels.keep_point)}
        if self.fairness:                                                          # Eq. 4, both branches
            terms["fair"] = fairness_loss(logits_img.softmax(dim=1)) + fairness_loss(logits_pcl.softmax(dim=1))
        if self.align:                                                             # Eq. 3
            z_img, z_pcl = F.normalize(img_out.embedding.float(), dim=-1), F.normalize(pcl_emb.float(), dim=-1)
            align = global_weighted_contrastive(z_img, z_pcl, torch.tensor(1.0 / self.align_temperature))
            terms["align"] = 2 * align if self.align_reduction == "sum" else align
        gl = []
        if self.mim:
            terms["mim"], gl_img = self._mim(img_out, image_mask)
            gl.append(gl_img)
        if self.mpm:
            terms["mpm"], gl_pcl = self._mpm(pcl_emb, pcl_out)
            gl.append(gl_pcl)
        if gl:
            terms["gl"] = sum(gl)
        loss = sum(self.weights[name] * value for name, value in terms.items())
        return loss, self._logs(terms, labels, prob_img, prob_pcl, batch.get("y"))

    def _mim(self, out, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """L1 of the decoded normalised pixels of the masked patches, and GL_img."""
        height, width = self.image.grid
        tokens = out.tokens
        grid = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)
        pixels = self.image_decoder(grid)                                 # 1x1 conv + pixel shuffle to the patch size
        pixel_mask = F.interpolate(mask.view(-1, 1, height, width).float(), scale_factor=self.image.patch)
        mim = masked_pixel_l1(pixels, out.normalized, pixel_mask)
        return mim, global_local_alignment(out.embedding, self.image.project(tokens), mask)

    def _mpm(self, embedding: torch.Tensor, out) -> Tuple[torch.Tensor, torch.Tensor]:
        """L1 of the decoded masked tokens against their original embeddings, and GL_pcl."""
        mpm = masked_token_l1(self.point_decoder(out.tokens), out.embedded.detach(), out.mask)
        # f^P reads [CLS, max]: a token t enters as [t, t], its global feature were it alone
        local = self.projection(torch.cat([out.tokens, out.tokens], dim=-1))
        return mpm, global_local_alignment(embedding, local, out.mask)

    @staticmethod
    def _logs(terms: Mapping[str, torch.Tensor], labels, prob_img: torch.Tensor, prob_pcl: torch.Tensor,
              y: Optional[torch.Tensor]) -> Dict[str, float]:
        """The loss terms and the pseudo-label figures of a batch: kept share, share taken from the image, mean kept
        confidence, teacher image-point agreement and (``y`` read for it only) kept-label accuracy."""
        kept = labels.keep_image | labels.keep_point
        logs = {f"loss_{name}": float(value.detach()) for name, value in terms.items()}
        logs["pl_kept"] = float(kept.float().mean())
        logs["pl_from_image"] = float(labels.from_image[kept].float().mean()) if bool(kept.any()) else 0.0
        logs["pl_conf"] = float(labels.confidence[kept].float().mean()) if bool(kept.any()) else 0.0
        logs["pl_agree"] = 100.0 * float((prob_img.argmax(1) == prob_pcl.argmax(1)).float().mean())
        if y is not None and bool(kept.any()):
            y = y.view(-1).to(labels.image.device)
            hits = torch.where(labels.keep_image, labels.image == y, labels.point == y)
            logs["pl_acc"] = 100.0 * float(hits[kept].float().mean())
        return logs

    # ---- optimiser groups and exports ----

    def param_groups(self) -> List[ParamGroup]:
        """The image tower by depth with lr scaled by ``layer_decay`` ** (depth from the top)."""
        layers = self.image.layers()
        return [ParamGroup(f"image_layer_{i}", [p for p in params if p.requires_grad],
                           lr_scale=self.layer_decay ** (len(layers) - 1 - i))
                for i, params in enumerate(layers)]

    def export_state(self) -> Dict[str, Any]:
        """``encoder`` (loadable into ``BaseCls.encoder``) with ``encoder_args``, f^P, Q and the class names."""
        return {"encoder": self.encoder.state_dict(), "encoder_args": plain_config(self.encoder_args),
                "projection": self.projection.state_dict(), "classifier": self.classifier.detach().clone(),
                "class_names": list(self.class_names), "image_encoder": self.image_encoder_cfg}
