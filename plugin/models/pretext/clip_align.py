"""Point encoders aligned to frozen image (and text) embeddings: ULIP-style alignment and the captionless hard
negatives of "No Captions, No Problem" (Sbrolli & Matteucci, Eqs. 5-6).

A point encoder (any OpenPoints encoder with ``forward_cls_feat``, PointNeXt-S by default) and a linear
projection map a cloud to z_3d (D,), L2-normalised; it is aligned to z_img, the frozen, L2-normalised image
embedding of one of the object's rendered views, precomputed (``img_emb`` in the batch, from the dataset's
similarity store) or computed by ``model.image_encoder`` (:func:`~plugin.models.backbones.image_embedders.
build_image_embedder`: a CLIP image tower, or any timm encoder such as EfficientNet-Lite0). Logits are
Z = exp(s) z_3d z_img^T with a learnable temperature s (s_0 = log(1/0.07)), exp(s) clamped at 100.

Objectives (``model.objective``):

- ``ulip``: 1/2 [CE(P->T) + CE(T->P)] + 1/2 [CE(P->I) + CE(I->P)] (ULIP), T the frozen CLIP text embedding of
  each sample's category (``class_names`` under ``templates``, averaged over the templates);
- ``hardneg``: image <-> 3D only, 1/2 L(Z, W) + 1/2 L(Z^T, W) (Eq. 5) with the negatives weighted by a
  precomputed 3D-3D similarity (Eq. 6, :func:`plugin.losses.negative_weights`): the store's entry for two objects
  of one category, ``similarity.alpha`` across categories; ``similarity.kind`` ``i2i``, ``i2l2``, or ``avg``
  (the mean of the two normalised weight matrices, Sec. 4.1);
- ``plain``: the same loss with W = 1 (the baseline).

Under DDP the negatives span the global batch and W is the global batch's.
"""
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from openpoints.models.build import MODELS, build_model_from_cfg
from torch import nn

from ...clip import ClipModel, load_clip_from_cfg, resolve_templates, text_classifier, zero_shot_logits
from ...clip.prompts import TemplateSpec, json_list
from ...clip.similarity_store import KINDS as SIMILARITY_KINDS
from ...clip.similarity_store import SimilarityStore
from ...errors import BadInputError, ConfigError
from ...losses import average_weights, global_weighted_contrastive, negative_weights
from ...losses.global_batch import gather_rows
from ..backbones.image_embedders import ImageEmbedder, build_image_embedder
from ..base import Batch, ParamGroup, PretextModel, batch_of, plain_config, reject_unknown_keys

LOGGER = logging.getLogger("plugin")
OBJECTIVES = ("ulip", "hardneg", "plain")
SIMILARITY_CHOICES = (*SIMILARITY_KINDS, "avg")
SWITCHES = ("encoder_args", "objective", "image_encoder", "embed_dim", "clip", "class_names", "templates",
            "similarity", "logit_scale_init", "zeroshot_templates")
SIMILARITY_KEYS = ("dir", "kind", "alpha")
MAX_LOGIT_SCALE = 100.0                         # exp(s) is clamped here (CLIP, ULIP and the paper)
DEFAULT_LOGIT_SCALE = 1 / 0.07                  # exp(s_0), s_0 = log(1/0.07)
def resolve_class_names(spec: Union[str, Sequence[str]], key: str = "model.class_names") -> List[str]:
    """Category names in label order: a list, or a JSON file holding a list (``path.json``) or a mapping of lists
    (``path.json:entry``, optional with one entry), e.g. ``ulip_labels.json:modelnet40``.

    Args:
        spec: the names or the file spec.
        key: its config key, for the messages.
    """
    if isinstance(spec, str):
        spec = json_list(spec, key, "Class-name file", "a list of category names in label order or to an existing "
                                                       "JSON file of them")
    if isinstance(spec, str) or not isinstance(spec, Sequence) or not spec or \
            not all(isinstance(name, str) for name in spec):
        raise ConfigError(f"{key} holds no list of category names: give the names in label order, e.g. "
                          f"[airplane, chair, lamp], or a JSON file of them.")
    return list(spec)


def store_similarity(store: SimilarityStore, kind: str, categories: torch.Tensor,
                     rows: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The similarity S (N, N) and same-category mask (N, N) of a batch of objects, read from a store.

    Args:
        store: the similarity store the dataset's ``sim_category``/``sim_row`` refer to.
        kind: ``i2i`` or ``i2l2``.
        categories: (N,) int64 category index of each object in the store.
        rows: (N,) int64 row of each object in its category's matrix.

    Returns:
        ``(S, same)`` on ``categories``' device; S holds the store's entries for same-category pairs, 0 elsewhere.
    """
    cats, rows_cpu = categories.long().cpu(), rows.long().cpu()
    n = cats.shape[0]
    s = torch.zeros(n, n)
    for c in cats.unique().tolist():
        if not 0 <= c < len(store.categories):
            raise BadInputError(f"sim_category {c} is not a category of the similarity store ({len(store.categories)} "
                                f"categories): give the dataset and model.similarity.dir the same store.")
        members = (cats == c).nonzero().squeeze(1)
        matrix, picked = store.matrix(kind, c), rows_cpu[members]
        if int(picked.max()) >= matrix.shape[0] or int(picked.min()) < 0:
            raise BadInputError(f"sim_row {int(picked.max())} is outside the {matrix.shape[0]} objects of store "
                                f"category '{store.categories[c]}': give the dataset and model.similarity.dir the "
                                f"same store.")
        s[members.unsqueeze(1), members.unsqueeze(0)] = matrix[picked.unsqueeze(1), picked.unsqueeze(0)]
    same = cats.unsqueeze(1) == cats.unsqueeze(0)
    return s.to(categories.device), same.to(categories.device)


def global_negative_weights(store: SimilarityStore, kind: str, alpha: float, categories: torch.Tensor,
                            rows: torch.Tensor) -> torch.Tensor:
    """W (N, N) of the global batch (Eq. 6) from this process's ``sim_category``/``sim_row`` (n,).

    Under DDP the categories and rows of every process are gathered (in rank order, without gradients), so N is
    the global batch; ``avg`` averages the normalised I2I and (I2L)^2 weights (Sec. 4.1).

    Args:
        store: the similarity store.
        kind: ``i2i``, ``i2l2`` or ``avg``.
        alpha: the similarity of objects of different categories.
        categories: (n,) int64 store category index of each object of this process.
        rows: (n,) int64 row of each object in its category's matrix.
    """
    with torch.no_grad():
        categories, _ = gather_rows(categories.long())
        rows, _ = gather_rows(rows.long())
        weights = [negative_weights(*store_similarity(store, k, categories, rows), alpha)
                   for k in (SIMILARITY_KINDS if kind == "avg" else (kind,))]
    return weights[0] if len(weights) == 1 else average_weights(*weights)


@dataclass
class FrozenTowers:
    """The frozen image embedder and CLIP text tower, held outside the module tree (never in checkpoints)."""

    image: Optional[ImageEmbedder]
    text: Optional[ClipModel]


@MODELS.register_module()
class CLIPAlign(PretextModel):
    """A point encoder aligned to frozen image embeddings, with ULIP, hard-negative or plain contrastive loss.

    A batch holds ``pos`` (B,N,3), ``x`` (B,C,N) (optional: ``pos`` is used), ``y`` (B,) category labels (``ulip``),
    ``img_emb`` (B,D) precomputed image embeddings or ``img`` (B,3,H,W) in [0, 1] for ``model.image_encoder``, and for
    ``hardneg`` ``sim_category``/``sim_row`` (B,) int64 (the object's category and row in the similarity store).
    ``forward`` returns ``(loss, logs)``; the encoder, the projection and s train, nothing else.

    The temperature: s is a 0-dim parameter, the logits scale is exp(s).clamp(max=100) in every forward, and in
    training s itself is clamped to log(100) before it is used (CLIP's clamp after each step), so it never drifts
    where it gets no gradient.

    Args:
        encoder_args: any OpenPoints encoder with ``forward_cls_feat`` (``PointNextEncoder``, ``DGCNN``, ...).
        objective: ``ulip``, ``hardneg`` or ``plain``.
        image_encoder: :func:`build_image_embedder` block (``{NAME: clip|timm, name, pretrained, ...}``); embeds
            ``img`` when a batch has no ``img_emb`` (and for ``encode_image``). Optional when every batch has
            ``img_emb``, then ``embed_dim`` is required.
        embed_dim: D, the image embeddings' dimension; default: the image encoder's.
        clip: ``{name, pretrained}`` of the CLIP whose text tower encodes ``ulip`` texts and zero-shot prompts;
            default: the image encoder's CLIP (when it is one).
        class_names: ``ulip``: category names in label order (``y`` indexes them), a list or a JSON file
            (:func:`resolve_class_names`).
        templates: ``ulip``: the training prompt templates, any :func:`plugin.clip.resolve_templates` spec, e.g.
            ULIP's 64 ShapeNet templates ``../shared/data/text/ulip_templates.json:shapenet_64``.
        similarity: ``hardneg``: ``{dir: <store folder>, kind: i2i|i2l2|avg, alpha: 0.25}``; ``dir`` must be the
            store the dataset reads ``sim_category``/``sim_row`` from.
        logit_scale_init: exp(s_0), in (0, 100].
        zeroshot_templates: templates of ``encode_text`` (default ``point_cloud``: "a point cloud of a {}."; ULIP's
            ensemble: ``../shared/data/text/ulip_templates.json:modelnet40_64``).
        **kwargs: nothing else is accepted: an unknown key is an error.
    """

    supports_zero_shot = True
    supports_retrieval = True
    supports_validation = True

    def __init__(self, encoder_args: Dict[str, Any], objective: str = "hardneg",
                 image_encoder: Optional[Dict[str, Any]] = None, embed_dim: Optional[int] = None,
                 clip: Optional[Dict[str, Any]] = None, class_names: Any = None,
                 templates: Optional[TemplateSpec] = None,
                 similarity: Optional[Dict[str, Any]] = None, logit_scale_init: float = DEFAULT_LOGIT_SCALE,
                 zeroshot_templates: TemplateSpec = "point_cloud", **kwargs: Any):
        super().__init__()
        reject_unknown_keys(kwargs, SWITCHES, "model", "CLIPAlign")
        if objective not in OBJECTIVES:
            raise ConfigError(f"model.objective is '{objective}': set it to one of {', '.join(OBJECTIVES)}.")
        if not 0 < float(logit_scale_init) <= MAX_LOGIT_SCALE:
            raise ConfigError(f"model.logit_scale_init is {logit_scale_init}: set it to exp(s_0) in (0, 100], e.g. "
                              f"14.2857 (1/0.07).")
        self.objective = objective
        self.encoder_args = encoder_args
        self.image_encoder_cfg = None if image_encoder is None else plain_config(image_encoder)
        self.encoder = build_model_from_cfg(encoder_args)
        image = build_image_embedder(image_encoder) if image_encoder is not None else None
        text = load_clip_from_cfg(clip, key="model.clip") if clip is not None else (image.clip if image else None)
        self.frozen = FrozenTowers(image, text)
        self.embed_dim = self._embed_dim(embed_dim)
        self.projection = nn.Linear(self._global_channels(int(encoder_args.get("in_channels", 3))), self.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(float(logit_scale_init))))  # s
        self.zeroshot_templates = resolve_templates(zeroshot_templates, "model.zeroshot_templates")
        self._text_cache: Dict[Tuple[str, ...], torch.Tensor] = {}
        self.class_names: Optional[List[str]] = None
        self.templates: Optional[List[str]] = None
        if objective == "ulip":
            if class_names is None:
                raise ConfigError("model.objective=ulip needs model.class_names: set it to the category names in label "
                                  "order, or a JSON file of them.")
            self.class_names = resolve_class_names(class_names)
            if templates is None:
                raise ConfigError("model.objective=ulip needs model.templates: set it to ULIP's prompt templates, e.g. "
                                  "../shared/data/text/ulip_templates.json:shapenet_64 (ULIP's data/templates.json).")
            self.templates = resolve_templates(templates, "model.templates")
            self._text_tower("model.objective=ulip")
        self.store: Optional[SimilarityStore] = None
        self.similarity_kind, self.alpha = None, None
        if objective == "hardneg":
            self._open_store(similarity)
        elif similarity:
            LOGGER.warning(f"model.similarity is ignored with model.objective={objective} (only hardneg reads it)")

    def _embed_dim(self, embed_dim: Optional[int]) -> int:
        """D: ``embed_dim``, or the image encoder's; they must agree, and the text tower's too."""
        image, text = self.frozen.image, self.frozen.text
        if embed_dim is None and image is None:
            raise ConfigError("CLIPAlign has no image encoder to take D from: set model.embed_dim to the dimension "
                              "of the dataset's img_emb, or set model.image_encoder.")
        dim = int(embed_dim) if embed_dim is not None else image.dim
        if image is not None and image.dim != dim:
            raise ConfigError(f"model.embed_dim is {dim} but model.image_encoder gives {image.dim}-d embeddings: set "
                              f"model.embed_dim to {image.dim} or null.")
        if text is not None and text.embed_dim != dim:
            raise ConfigError(f"The text tower of {text.name} gives {text.embed_dim}-d embeddings, not the {dim}-d "
                              f"image embeddings: set model.clip to a CLIP of the image encoder's dimension.")
        return dim

    def _global_channels(self, in_channels: int) -> int:
        """Channels of the encoder's global feature, from one small dry run in eval mode."""
        was_training = self.encoder.training
        self.encoder.eval()
        pos = torch.rand(1, 256, 3)
        with torch.no_grad():
            channels = self.encoder.forward_cls_feat({"pos": pos, "x": torch.rand(1, in_channels, 256)}).shape[1]
        self.encoder.train(was_training)
        return int(channels)

    def _text_tower(self, needed_by: str) -> ClipModel:
        if self.frozen.text is None:
            raise ConfigError(f"{needed_by} needs a CLIP text tower: set model.clip to {{name, pretrained}} of the "
                              f"CLIP the image embeddings come from, or model.image_encoder.NAME to clip.")
        return self.frozen.text

    def _open_store(self, similarity: Optional[Mapping[str, Any]]) -> None:
        similarity = dict(similarity or {})
        reject_unknown_keys(similarity, SIMILARITY_KEYS, "model.similarity", "CLIPAlign")
        if not similarity.get("dir"):
            raise ConfigError("model.objective=hardneg needs model.similarity.dir: set it to the --out folder of "
                              "`python tools/precompute_similarity.py` (the store the dataset reads).")
        kind = similarity.get("kind") or "i2i"
        if kind not in SIMILARITY_CHOICES:
            raise ConfigError(f"model.similarity.kind is '{kind}': set it to one of {', '.join(SIMILARITY_CHOICES)}.")
        alpha = float(similarity.get("alpha", 0.25))
        if not alpha >= 0:
            raise ConfigError(f"model.similarity.alpha is {alpha}: set it to a number >= 0 (the paper uses 0.25).")
        self.store = SimilarityStore.open(str(similarity["dir"]), key="model.similarity.dir")
        self.store.check({"kinds": list(SIMILARITY_KINDS) if kind == "avg" else [kind]})
        image = self.frozen.image
        if image is not None and self.store.manifest.get("encoder") != json.loads(json.dumps(image.descriptor)):
            LOGGER.warning("model.image_encoder is not the encoder the similarity store's embeddings were made with: "
                           "retrieval with encode_image then compares images in another space than training")
        self.similarity_kind, self.alpha = kind, alpha

    def _apply(self, fn, *args, **kwargs):
        """Device and dtype moves also reach the frozen towers held outside the module tree."""
        super()._apply(fn, *args, **kwargs)
        if self.frozen.image is not None:
            self.frozen.image._apply(fn, *args, **kwargs)
        if self.frozen.text is not None:
            self.frozen.text.model._apply(fn, *args, **kwargs)
        return self

    # ---- embeddings ----

    def scale(self) -> torch.Tensor:
        """The logits scale exp(s), clamped at 100 (0-dim, in the graph)."""
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def embed_points(self, batch: Batch) -> torch.Tensor:
        """z_3d (B, D): the encoder's global feature, projected and L2-normalised (with gradients)."""
        batch = batch_of(batch)
        pos, x = batch["pos"], batch.get("x")
        x = pos.transpose(1, 2).contiguous() if x is None else x    # (B, C, N); the coordinates without features
        features = self.encoder.forward_cls_feat({"pos": pos, "x": x})
        return F.normalize(self.projection(features).float(), dim=-1)

    def image_targets(self, batch: Batch) -> torch.Tensor:
        """z_img (B, D), L2-normalised, without gradients: ``img_emb``, or ``model.image_encoder`` on ``img``."""
        if "img_emb" in batch:
            emb = batch["img_emb"].float()
            if emb.dim() != 2 or emb.shape[1] != self.embed_dim:
                raise BadInputError(f"img_emb has shape {tuple(emb.shape)}, not (B, {self.embed_dim}): give the "
                                    f"dataset the similarity store of model.image_encoder's embeddings, or set "
                                    f"model.embed_dim.")
            return F.normalize(emb, dim=-1).detach()
        if "img" not in batch:
            raise BadInputError("CLIPAlign needs img_emb or img in a batch: give the dataset a similarity store "
                                "(img_emb) or let it load the images.")
        if self.frozen.image is None:
            raise ConfigError("The batch has images but no img_emb and CLIPAlign has no image encoder: set "
                              "model.image_encoder, or give the dataset a similarity store for img_emb.")
        return self.frozen.image(batch["img"])

    def category_text(self, labels: torch.Tensor) -> torch.Tensor:
        """T (B, D): the frozen text embedding of each sample's category (``class_names`` x ``templates``)."""
        names = self.class_names
        labels = labels.long().view(-1)
        if int(labels.max()) >= len(names) or int(labels.min()) < 0:
            raise BadInputError(f"Label {int(labels.max())} has no name among the {len(names)} model.class_names: set "
                                f"model.class_names to all category names of the dataset, in label order.")
        return self.text_features(names, self.templates).to(labels.device)[labels]

    def text_features(self, class_names: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """The CLIP text classifier (C, D) of ``class_names`` under ``templates``, computed once per pair."""
        key = (*map(str, class_names), "\0", *templates)
        if key not in self._text_cache:
            clip = self._text_tower("Text embeddings")
            with torch.autocast(device_type=clip.device.type, enabled=False):   # cached once: in float32
                self._text_cache[key] = text_classifier(clip, [str(n) for n in class_names], templates)
        return self._text_cache[key]

    # ---- the loss ----

    def forward(self, batch: Batch) -> Tuple[torch.Tensor, Dict[str, float]]:
        """The objective's loss of one batch, with ``loss``, ``loss_image`` (``loss_text`` for ulip),
        ``logit_scale`` and ``acc`` (3D->image top-1 in this process's batch, %)."""
        if self.training:
            with torch.no_grad():                                     # CLIP's clamp of s, before it is used
                self.logit_scale.clamp_(max=math.log(MAX_LOGIT_SCALE))
        z_3d, z_img, scale = self.embed_points(batch), self.image_targets(batch), self.scale()
        weights = None
        if self.objective == "hardneg":
            missing = [k for k in ("sim_category", "sim_row") if k not in batch]
            if missing:
                raise BadInputError(f"model.objective=hardneg needs sim_category and sim_row in a batch, "
                                    f"{', '.join(missing)} missing: give the dataset the similarity store "
                                    f"(model.similarity.dir).")
            weights = global_negative_weights(self.store, self.similarity_kind, self.alpha, batch["sim_category"],
                                              batch["sim_row"]).to(z_3d.device)
        loss_image = global_weighted_contrastive(z_3d, z_img, scale, weights)  # Eqs. 5-6 (W = 1 for plain and ulip)
        loss, logs = loss_image, {"loss_image": loss_image.item()}
        if self.objective == "ulip":
            if "y" not in batch:
                raise BadInputError("model.objective=ulip needs the category label y in a batch: use a dataset that "
                                    "gives it.")
            loss_text = global_weighted_contrastive(z_3d, self.category_text(batch["y"]), scale)
            loss = loss_text + loss_image        # ULIP: 1/2[CE(P->T)+CE(T->P)] + 1/2[CE(P->I)+CE(I->P)]
            logs["loss_text"] = loss_text.item()
        with torch.no_grad():
            hits = (z_3d @ z_img.t()).argmax(dim=1) == torch.arange(len(z_3d), device=z_3d.device)
        logs.update(loss=loss.item(), logit_scale=scale.item(), acc=100.0 * hits.float().mean().item())
        return loss, logs

    def param_groups(self) -> List[ParamGroup]:
        """Biases, 1-D parameters (norms) and the temperature s without weight decay."""
        no_decay = [p for name, p in self.named_parameters()
                    if p.requires_grad and (p.ndim <= 1 or name.endswith(".bias"))]
        return [ParamGroup("no_decay", no_decay, weight_decay_scale=0.0)]

    # ---- exports and the zero-shot / retrieval contract ----

    def export_state(self) -> Dict[str, Any]:
        """``encoder`` (loadable into ``BaseCls.encoder``) with ``encoder_args``, and what :meth:`load_export` reads
        back: ``projection``, ``logit_scale`` (s) and the ``image_encoder`` block."""
        return {"encoder": self.encoder.state_dict(), "encoder_args": plain_config(self.encoder_args),
                "projection": self.projection.state_dict(), "logit_scale": self.logit_scale.detach().clone(),
                "image_encoder": plain_config(self.image_encoder_cfg)}

    def load_export(self, state: Dict[str, Any], path: str, key: str = "pretrained_path") -> None:
        """Load the encoder, the projection and s of a CLIPAlign pre-training checkpoint, strictly."""
        missing = [k for k in ("encoder", "projection", "logit_scale") if k not in state]
        if missing:
            raise ConfigError(f"{path} has no {', '.join(missing)} entry: set {key} to the ckpt_best.pth of a "
                              f"CLIPAlign pre-training run.")
        try:
            self.encoder.load_state_dict(state["encoder"], strict=True)
            self.projection.load_state_dict(state["projection"], strict=True)
        except RuntimeError as err:
            raise ConfigError(f"The CLIPAlign export in {path} does not fit this model ({str(err).splitlines()[0]}): "
                              f"set model.encoder_args and model.embed_dim to those of its pre-training run.") from err
        with torch.no_grad():
            self.logit_scale.copy_(torch.as_tensor(state["logit_scale"]).reshape(()))
        if state.get("image_encoder") != self.image_encoder_cfg:
            LOGGER.warning(f"{path} was pre-trained with image_encoder {state.get('image_encoder')}, not "
                           f"model.image_encoder {self.image_encoder_cfg}: images may be embedded in another space")
        LOGGER.info(f"CLIPAlign export: encoder, projection and logit scale from {path}")

    @torch.no_grad()
    def encode_3d(self, batch: Batch) -> torch.Tensor:
        """z_3d (B, D), L2-normalised, of ``batch["pos"]`` (and ``x`` when given)."""
        return self.embed_points(batch)

    def encode_text(self, class_names: Sequence[str]) -> torch.Tensor:
        """Text classifier (C, D) of ``class_names`` with ``model.zeroshot_templates`` (CLIP text tower)."""
        return self.text_features(class_names, self.zeroshot_templates)

    @torch.no_grad()
    def validation_logits(self, batch: Union[Batch, torch.Tensor], class_names: Sequence[str]) -> torch.Tensor:
        """Zero-shot logits (B, C) of the clouds against ``class_names`` (``pretrain.select: zeroshot`` on the
        held-out 20% of the pre-training objects); needs the CLIP text tower."""
        self._text_tower("pretrain.select=zeroshot (set pretrain.select=loss without a text tower)")
        return zero_shot_logits(self.encode_3d(batch_of(batch)), self.encode_text(class_names))

    @torch.no_grad()
    def encode_image(self, batch: Batch) -> torch.Tensor:
        """z_img (B, D): ``img_emb`` when the batch has it, else the image encoder on ``img``."""
        return self.image_targets(batch)
