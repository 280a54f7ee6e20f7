"""Published Point-BERT, Point-MAE, ULIP, Point-M2AE and I2P-MAE checkpoints, renamed for our encoders.

Each :class:`Layout` of :data:`LAYOUTS` is a table of rules from the upstream key names (read from the
authors' code) onto :class:`~.point_vit.PointViTEncoder` or :class:`~.point_m2ae.PointM2AEEncoder`:

- ``point_mae_pretrain``: Pang-Yatian/Point-MAE models/Point_MAE.py ``Point_MAE`` (``MAE_encoder.*``);
- ``point_mae``: the same file's ``PointTransformer``, fine-tuned;
- ``point_bert_pretrain``: lulutang0608/Point-BERT models/Point_BERT.py ``Point_BERT`` (``transformer_q.*``) (*);
- ``point_bert``: the same file's ``PointTransformer``, fine-tuned (*);
- ``ulip_pointbert``: salesforce/ULIP models/ULIP_models.py with models/pointbert/point_encoder.py
  ``PointTransformer`` as ``point_encoder.*`` (*);
- ``m2ae_pretrain``: ZrrSkywalker/Point-M2AE models/Point_M2AE.py ``Point_M2AE`` and ZrrSkywalker/I2P-MAE
  models/I2P_MAE.py ``I2P_MAE`` (``h_encoder.*`` with ``encoder_norms``), onto PointM2AEEncoder;
- ``m2ae``: their models/*_Finetune.py classifiers (``h_encoder.*`` and ``norm``), onto PointM2AEEncoder.

The renaming, in short:

- the group embedding ``encoder.{first,second}_conv.{0,1,3}`` (Conv1d k=1, BatchNorm1d, ReLU, Conv1d) becomes
  ``tokenizer.encoder.{first,second}.{0,1,3}``, whose shared MLPs are ``nn.Linear``: the (out, in, 1) kernels
  are squeezed to (out, in); BatchNorm weights, running stats and ``num_batches_tracked`` keep their names;
- ``cls_token``, ``cls_pos`` and Point-BERT's ``mask_token`` of shape (1, 1, C) become (C,); the mask token
  loads only into an encoder built with one;
- ``blocks.blocks.N.*`` becomes ``blocks.N.*`` (timm's ``Block`` has the same parameter names and the same
  qkv row order), ``pos_embed.{0,2}`` and ``norm`` keep theirs;
- Point-M2AE's ``h_encoder.token_embed.S``, ``encoder_pos_embeds.S``, ``encoder_blocks.S.blocks.N`` become
  ``token_embed.S``, ``pos_embed.S``, ``blocks.S.N``; our final ``norm`` is the pre-training's
  ``h_encoder.encoder_norms.<last stage>`` (what its SVM evaluation pools) or the fine-tuned classifier's ``norm``.

Keys a layout drops on purpose (decoders, MAE mask tokens, classification and contrastive heads, momentum
encoders, the dVAE, ULIP's image and text towers and ``pc_projection``, I2P-MAE's frozen CLIP, the norms of
Point-M2AE's intermediate stages, which only feed its decoder) are reported as ``ignored``; keys no rule
or ignore pattern knows are ``unexpected``. Point-MAE pre-training has no CLS token: ``cls_token`` and
``cls_pos`` stay at their initialisation (``kept``), as in Point-MAE's own fine-tuning.

(*) Point-BERT and ULIP embed groups into 256 channels and project them to the 384-wide transformer
with ``reduce_dim``, a Linear applied after the group max pool: no Linear before the pool can stand in for
it. It is mapped onto ``tokenizer.project`` (:data:`TOKEN_PROJECTION`), the layer PointViTEncoder has with
``group_dim=256``; an encoder without it refuses these layouts in one sentence naming that setting.
"""
import logging
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from ...errors import BadCheckpointError, ConfigError
from ...io import read_checkpoint

LOGGER = logging.getLogger("plugin")
WRAPPERS = ("module.", "base_model.")             # DataParallel / DDP, and Point-MAE's nested base_model
CONTAINERS = ("base_model", "state_dict", "model")  # Point-BERT/MAE/M2AE/I2P-MAE, ULIP, older Point-BERT
TOKEN_PROJECTION = "tokenizer.project."            # Point-BERT's reduce_dim: PointViTEncoder(group_dim=256)
LAST_STAGE = "LAST"                                # in a rule pattern: the index of Point-M2AE's last stage
OPTIONAL = ("mask_token",)   # loaded into an encoder built with one (encoder_args.mask_token), else ignored or kept
Transform = Callable[[Tensor], Tensor]


def same(tensor: Tensor) -> Tensor:
    """The tensor unchanged."""
    return tensor


def squeeze_kernel(tensor: Tensor) -> Tensor:
    """A Conv1d kernel (out, in, 1) as the weight (out, in) of the equivalent Linear; other tensors unchanged.

    Raises:
        BadCheckpointError: a kernel wider than 1, which no Linear replaces.
    """
    if tensor.dim() != 3:
        return tensor
    if tensor.shape[-1] != 1:
        raise BadCheckpointError(f"A Conv1d kernel of shape {tuple(tensor.shape)} is wider than 1, so no Linear "
                                 f"layer can take it: the checkpoint is not of a supported layout.")
    return tensor[..., 0]


def flatten_token(tensor: Tensor) -> Tensor:
    """A learnable token (1, 1, C) as our (C,)."""
    return tensor.reshape(-1)


@dataclass(frozen=True)
class Rule:
    """One renaming: an upstream key that fully matches ``pattern`` becomes ``target`` (``re`` group
    references allowed), its tensor passed through ``transform``."""

    pattern: str
    target: str
    transform: Transform = same


@dataclass(frozen=True)
class Layout:
    """The key layout of one published checkpoint kind.

    Args:
        title: the model, for messages.
        markers: keys that all occur in this layout (after the wrappers are stripped).
        excludes: keys that never occur in it (they tell it from a similar layout).
        rules: the renamings, tried in order.
        ignored: regexes, matched at the key's start, of upstream keys dropped on purpose.
        kept: our keys the layout does not hold: left at their initialisation.
    """

    title: str
    markers: Tuple[str, ...]
    rules: Tuple[Rule, ...]
    excludes: Tuple[str, ...] = ()
    ignored: Tuple[str, ...] = ()
    kept: Tuple[str, ...] = ()


def _vit_rules(prefix: str = "", projection: bool = False) -> Tuple[Rule, ...]:
    """Rules of Point-BERT / Point-MAE's transformer (group embedding, tokens, blocks, norm) under ``prefix``."""
    p = re.escape(prefix)
    rules = [Rule(p + r"encoder\.(first|second)_conv\.([013])\."
                      r"(weight|bias|running_mean|running_var|num_batches_tracked)",
                  r"tokenizer.encoder.\1.\2.\3", squeeze_kernel),
             Rule(p + r"pos_embed\.([02])\.(weight|bias)", r"pos_embed.\1.\2"),
             Rule(p + r"blocks\.blocks\.(\d+)\.(.+)", r"blocks.\1.\2"),
             Rule(p + r"norm\.(weight|bias)", r"norm.\1"),
             Rule(p + r"(cls_token|cls_pos|mask_token)", r"\1", flatten_token)]
    if projection:
        rules += [Rule(p + r"reduce_dim\.(weight|bias)", TOKEN_PROJECTION + r"\1")]
    return tuple(rules)


def _m2ae_rules(last_norm: str) -> Tuple[Rule, ...]:
    """Rules of Point-M2AE's hierarchical encoder (``h_encoder``); ``last_norm`` is the pattern of the final norm."""
    return (Rule(r"h_encoder\.token_embed\.(\d+)\.(first|second)_conv\.([013])\."
                 r"(weight|bias|running_mean|running_var|num_batches_tracked)",
                 r"token_embed.\1.\2.\3.\4", squeeze_kernel),
            Rule(r"h_encoder\.encoder_pos_embeds\.(\d+)\.([02])\.(weight|bias)", r"pos_embed.\1.\2.\3"),
            Rule(r"h_encoder\.encoder_blocks\.(\d+)\.blocks\.(\d+)\.(.+)", r"blocks.\1.\2.\3"),
            Rule(last_norm + r"\.(weight|bias)", r"norm.\1"))


_FIRST_CONV = "encoder.first_conv.0.weight"
_M2AE_MARKER = "h_encoder.token_embed.0.first_conv.0.weight"
_ULIP_TOWERS = r"(?!point_encoder\.)"   # every ULIP key outside the point encoder: image and text towers, pc_projection

LAYOUTS: Dict[str, Layout] = {
    "point_mae_pretrain": Layout(
        "Point-MAE pre-training (Point_MAE)", ("MAE_encoder." + _FIRST_CONV,), _vit_rules("MAE_encoder."),
        ignored=("mask_token", "decoder_pos_embed.", "MAE_decoder.", "increase_dim."),
        kept=("cls_token", "cls_pos")),
    "point_mae": Layout(
        "Point-MAE fine-tuned (PointTransformer)", (_FIRST_CONV, "cls_token"), _vit_rules(),
        excludes=("reduce_dim.weight",), ignored=("cls_head_finetune.",)),
    "point_bert_pretrain": Layout(
        "Point-BERT pre-training (Point_BERT)", ("transformer_q." + _FIRST_CONV,),
        _vit_rules("transformer_q.", projection=True),
        ignored=("transformer_q.lm_head.", "transformer_q.cls_head.", "transformer_k.", "dvae.", "queue")),
    "point_bert": Layout(
        "Point-BERT fine-tuned (PointTransformer)", (_FIRST_CONV, "reduce_dim.weight"), _vit_rules(projection=True),
        ignored=("cls_head_finetune.",)),
    "ulip_pointbert": Layout(
        "ULIP PointBERT (point_encoder)", ("point_encoder." + _FIRST_CONV,),
        _vit_rules("point_encoder.", projection=True), ignored=(_ULIP_TOWERS,)),
    "m2ae_pretrain": Layout(
        "Point-M2AE / I2P-MAE pre-training (h_encoder with encoder_norms)",
        (_M2AE_MARKER, "h_encoder.encoder_norms.0.weight"),
        _m2ae_rules(r"h_encoder\.encoder_norms\." + LAST_STAGE),
        ignored=("h_encoder.encoder_norms.", "mask_token", "h_decoder.", "decoder_pos_embeds.", "token_prop.",
                 "decoder_norm.", "rec_head", "clip_model.")),
    "m2ae": Layout(
        "Point-M2AE / I2P-MAE fine-tuned (h_encoder and norm)", (_M2AE_MARKER, "norm.weight"), _m2ae_rules(r"norm"),
        excludes=("h_encoder.encoder_norms.0.weight",), ignored=("cls_head_finetune.",)),
}


@dataclass
class ConversionReport:
    """What :func:`convert_published` did.

    Args:
        layout: the name of the layout in :data:`LAYOUTS`.
        sources: our key -> the upstream key it came from.
        ignored: upstream keys dropped on purpose.
        unexpected: upstream keys that no rule and no ignore pattern of the layout covers.
        kept: our keys the layout does not hold (left at their initialisation).
    """

    layout: str
    sources: Dict[str, str] = field(default_factory=dict)
    ignored: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    kept: List[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        """The layout's model, e.g. ``Point-MAE pre-training (Point_MAE)``."""
        return LAYOUTS[self.layout].title


@dataclass
class PublishedLoad:
    """What :func:`load_converted` put into an encoder.

    Args:
        layout: the layout name.
        loaded: our keys that were loaded.
        ignored: upstream keys dropped on purpose (the layout's, and an :data:`OPTIONAL` one the encoder lacks).
        kept: our keys left at their initialisation because the layout does not hold them.
        missing: our keys the checkpoint should have held but did not (only a non-strict load gets here).
        unexpected: upstream keys the encoder has no place for (only a non-strict load gets here).
    """

    layout: str
    loaded: List[str]
    ignored: List[str]
    kept: List[str]
    missing: List[str]
    unexpected: List[str]

    def summary(self) -> str:
        """One line: layout, counts, and the first kept, missing and unexpected keys."""
        text = (f"{LAYOUTS[self.layout].title}: loaded {len(self.loaded)} tensors, ignored {len(self.ignored)} "
                f"upstream tensors on purpose")
        for name, keys in (("kept at initialisation", self.kept), ("missing", self.missing),
                           ("unexpected", self.unexpected)):
            if keys:
                text += f"; {name}: {', '.join(keys[:4])}" + (f" (+{len(keys) - 4})" if len(keys) > 4 else "")
        return text


def checkpoint_weights(checkpoint: Mapping[str, object]) -> Dict[str, Tensor]:
    """The tensors of a published checkpoint, wrapper prefixes (``module.``, ``base_model.``) stripped.

    Args:
        checkpoint: a checkpoint dict (its state dict under ``base_model``, ``state_dict`` or ``model``) or a
            bare state dict.
    """
    container = next((checkpoint[k] for k in CONTAINERS if isinstance(checkpoint.get(k), Mapping)), checkpoint)
    weights = {}
    for key, value in container.items():
        if torch.is_tensor(value):
            while key.startswith(WRAPPERS):
                key = key.split(".", 1)[1]
            weights[key] = value
    return weights


def detect_layout(weights: Mapping[str, Tensor]) -> Optional[str]:
    """The name of the layout whose markers ``weights`` (wrappers stripped) all hold, or None."""
    return next((name for name, layout in LAYOUTS.items()
                 if all(k in weights for k in layout.markers) and not any(k in weights for k in layout.excludes)),
                None)


def _layouts_sentence() -> str:
    return ", ".join(f"{name} ({layout.title})" for name, layout in LAYOUTS.items())


def _last_stage(weights: Mapping[str, Tensor]) -> str:
    """The index of Point-M2AE's last encoder stage, from its token embeddings."""
    stages = {int(m.group(1)) for k in weights if (m := re.match(r"h_encoder\.token_embed\.(\d+)\.", k))}
    return str(max(stages, default=0))


def convert_published(state: Mapping[str, object], layout: str = "auto") -> Tuple[Dict[str, Tensor],
                                                                                   ConversionReport]:
    """Rename a published checkpoint's encoder tensors to our encoder's keys.

    Args:
        state: the checkpoint dict or its state dict (see :func:`checkpoint_weights`).
        layout: a name in :data:`LAYOUTS`, or ``auto`` to detect it from the keys.

    Returns:
        Our encoder state (its kept keys absent) and the :class:`ConversionReport`.

    Raises:
        ConfigError: ``layout`` is not a known name.
        BadCheckpointError: ``auto`` and no layout matches, or a Conv1d kernel wider than 1.
    """
    weights = checkpoint_weights(state)
    if layout == "auto":
        detected = detect_layout(weights)
        if detected is None:
            keys = list(weights) or list(state)   # the top-level keys when no tensor is there
            raise BadCheckpointError(f"The checkpoint's keys (first: {', '.join(map(str, keys[:3]))}) match none of "
                                     f"the published layouts: {_layouts_sentence()}.")
        layout = detected
    if layout not in LAYOUTS:
        raise ConfigError(f"Unknown checkpoint layout '{layout}': use auto or one of {_layouts_sentence()}.")
    spec = LAYOUTS[layout]
    last = _last_stage(weights)
    rules = [(re.compile(rule.pattern.replace(LAST_STAGE, last)), rule) for rule in spec.rules]
    converted, report = {}, ConversionReport(layout)
    for key, tensor in weights.items():
        hit = next(((m, rule) for pattern, rule in rules if (m := pattern.fullmatch(key))), None)
        if hit is not None:
            target = hit[0].expand(hit[1].target)
            converted[target] = hit[1].transform(tensor)
            report.sources[target] = key
        elif any(re.match(pattern, key) for pattern in spec.ignored):
            report.ignored.append(key)
        else:
            report.unexpected.append(key)
    report.kept = [k for k in spec.kept if k not in converted]
    return converted, report


def load_converted(encoder: nn.Module, state: Mapping[str, Tensor], report: ConversionReport, path: str,
                   strict: bool = True) -> PublishedLoad:
    """Copy the output of :func:`convert_published` into ``encoder``.

    Args:
        encoder: a PointViTEncoder or PointM2AEEncoder of the checkpoint's configuration.
        state: our keys -> tensors.
        report: the conversion's report.
        path: the checkpoint, named in messages.
        strict: refuse a load that leaves an encoder tensor unset (other than the layout's kept ones) or
            leaves an upstream tensor unused; otherwise log what was skipped.

    Raises:
        ConfigError: the layout needs a layer the encoder lacks, a tensor differs in shape, or (strict) some
            tensors are missing or unexpected.
    """
    spec, expected = LAYOUTS[report.layout], encoder.state_dict()
    if any(k.startswith(TOKEN_PROJECTION) for k in state) and not any(k.startswith(TOKEN_PROJECTION) for k in expected):
        width = tuple(state[TOKEN_PROJECTION + "weight"].shape[::-1])
        raise ConfigError(f"Checkpoint '{path}' is a {spec.title} encoder, whose reduce_dim Linear {width[0]} -> "
                          f"{width[1]} acts on tokens after their max pool: set encoder_args.group_dim={width[0]} so "
                          f"that {type(encoder).__name__} has that layer.")
    ignored = list(report.ignored) + [report.sources[k] for k in OPTIONAL if k in state and k not in expected]
    kept = [k for k in (*report.kept, *OPTIONAL) if k in expected and k not in state]
    missing = [k for k in expected if k not in state and k not in kept]
    unexpected = list(report.unexpected) + [report.sources[k] for k in state
                                            if k not in expected and k not in OPTIONAL]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        raise ConfigError(f"Checkpoint '{path}' ({spec.title}) has {report.sources[wrong[0]]} of shape "
                          f"{tuple(state[wrong[0]].shape)} where the encoder's {wrong[0]} is "
                          f"{tuple(expected[wrong[0]].shape)} ({len(wrong)} differ): set encoder_args to the "
                          f"checkpoint's configuration.")
    if strict and (missing or unexpected):
        what = (f"lacks {len(missing)} of the encoder's {len(expected)} tensors (first: {', '.join(missing[:3])})"
                if missing else
                f"holds {len(unexpected)} tensors the encoder has no place for (first: {', '.join(unexpected[:3])})")
        raise ConfigError(f"Checkpoint '{path}' ({spec.title}) {what}: set encoder_args to the checkpoint's "
                          f"configuration, or load with strict=False to skip them.")
    loaded = [k for k in expected if k in state]
    encoder.load_state_dict({k: state[k] for k in loaded}, strict=False)
    result = PublishedLoad(report.layout, loaded, ignored, kept, missing, unexpected)
    if missing or unexpected:
        LOGGER.warning(f"partial load of '{path}': {result.summary()}")
    return result


def load_published(encoder: nn.Module, path: str, layout: str = "auto", strict: bool = True,
                   key: str = "load_path") -> PublishedLoad:
    """Load a published checkpoint file (read without running code from it) into ``encoder``.

    Args:
        encoder: a PointViTEncoder or PointM2AEEncoder of the checkpoint's configuration.
        path: the checkpoint file.
        layout: a name in :data:`LAYOUTS`, or ``auto``.
        strict: see :func:`load_converted`.
        key: the config key that named ``path``, for messages.

    Raises:
        WeightsNotFoundError: no file at ``path``.
        BadCheckpointError: the file is unreadable or unsafe, or matches no layout.
        ConfigError: see :func:`load_converted`.
    """
    checkpoint = read_checkpoint(path, key, "a published Point-BERT, Point-MAE, ULIP, Point-M2AE or I2P-MAE "
                                            "checkpoint")
    state, report = convert_published(checkpoint, layout)
    result = load_converted(encoder, state, report, path, strict)
    LOGGER.info(f"'{path}': {result.summary()}")
    return result
