"""Load an open_clip model from a config, offline by default, and copy its visual tower.

``model.clip`` in a config is ``{name: ViT-B-32, pretrained: ...}`` (CLIP2Point's ViT-B/32 by default,
:data:`DEFAULT_CLIP`) where ``pretrained`` is

- a local checkpoint path (loads offline): an open_clip state dict (``.bin``, ``.pt``, ``.pth``,
  ``.safetensors``) or OpenAI's TorchScript release (e.g. ``ViT-B-32.pt`` of the ``clip`` package);
- an open_clip tag such as ``openai`` or ``laion2b_s34b_b88k`` (downloads, so only works online);
- ``none`` (or null): random initialisation, for tests and smoke runs.

CLIP2Point's depth encoder E_d starts as a trainable copy of the CLIP visual encoder
(:func:`trainable_visual_copy`); a CLIP2Point pre-training checkpoint stores it as the state dict
under :data:`DEPTH_ENCODER_KEY` (:func:`load_depth_encoder`).
"""
import copy
import hashlib
import logging
import os
import zipfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import open_clip
import torch
from torch import nn

from ..errors import ConfigError, WeightsNotFoundError
from ..io import read_checkpoint

LOGGER = logging.getLogger("plugin")
CFG_KEY = "model.clip"
DEPTH_ENCODER_KEY = "depth_encoder"  # checkpoint entry: state dict of the depth encoder (a CLIP visual tower)
RANDOM_INIT = ("", "none", "null", "random")
DEFAULT_CLIP = "ViT-B-32"  # CLIP2Point's backbone (Huang et al., Sec. 4 and the authors' release)


@dataclass
class ClipModel:
    """A loaded open_clip model with what its inputs need.

    Attributes:
        model: the open_clip ``CLIP`` (``encode_image``, ``encode_text``, ``visual``).
        name: open_clip model name, e.g. ``ViT-B-32``.
        weights: where the weights came from: a path, an open_clip tag, or ``none``.
        tokenizer: text -> (T, context_length) token ids.
        image_mean: per-channel RGB mean of the image normalisation.
        image_std: per-channel RGB std of the image normalisation.
        image_size: side of the square input image in pixels.
    """

    model: nn.Module
    name: str
    weights: str
    tokenizer: Callable[..., torch.Tensor]
    image_mean: Tuple[float, float, float]
    image_std: Tuple[float, float, float]
    image_size: int

    @property
    def embed_dim(self) -> int:
        """Dimension D of the joint image-text embedding."""
        return int(self.model.text_projection.shape[-1]) if hasattr(self.model, "text_projection") \
            else int(self.model.visual.output_dim)

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    @property
    def visual(self) -> nn.Module:
        """The visual tower: images (B,3,S,S) normalised with ``image_mean``/``image_std`` -> (B,D)."""
        return self.model.visual

    def text_fingerprint(self) -> str:
        """A cheap digest of the text tower's weights (see :func:`text_tower_fingerprint`)."""
        return text_tower_fingerprint(self.model)


def text_tower_fingerprint(model: nn.Module, samples: int = 64) -> str:
    """Digest of every non-visual tensor's name, shape, sum and ``samples`` strided values.

    Two random initialisations or two checkpoints differ in it, so cached text features are never stale.

    Args:
        model: an open_clip model; tensors under ``visual.`` and the logit scale/bias are skipped.
        samples: values read per tensor (the sum covers the rest).
    """
    digest = hashlib.sha1()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.startswith("visual.") or name in ("logit_scale", "logit_bias"):
                continue
            flat = tensor.detach().reshape(-1).float()
            step = max(1, flat.numel() // samples)
            picked = flat[::step][:samples].cpu().double()
            digest.update(f"{name}{tuple(tensor.shape)}{float(flat.double().sum()):.10e}".encode())
            digest.update(picked.numpy().tobytes())
    return digest.hexdigest()[:16]


def _is_torchscript(path: str) -> bool:
    """Whether ``path`` is a TorchScript archive (OpenAI's CLIP release format)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def _missing_weights_message(name: str, key: str) -> str:
    return (f"set {key}.pretrained to a local checkpoint of {name} (OpenAI's {name}.pt release or an open_clip "
            f".bin/.pt/.safetensors file), run online once with an open_clip tag such as 'openai', or set it to "
            f"none for random weights")


def _create(name: str, pretrained: Optional[str], key: str) -> nn.Module:
    """The open_clip model ``name`` with weights from ``pretrained`` (None: random), on the CPU."""
    if name not in open_clip.list_models():
        raise ConfigError(f"Unknown open_clip model '{name}' in {key}.name: set it to one of open_clip.list_models(), "
                          f"e.g. ViT-B-32 or ViT-B-16.")
    if pretrained is None:
        LOGGER.warning(f"{key}.pretrained is none: CLIP {name} is randomly initialised (only for tests and smoke "
                       f"runs)")
        return open_clip.create_model(name, pretrained=None)
    if pretrained in open_clip.list_pretrained_tags_by_model(name):
        quick_gelu = bool(open_clip.get_pretrained_cfg(name, pretrained).get("quick_gelu", False))
        try:
            return open_clip.create_model(name, pretrained=pretrained, force_quick_gelu=quick_gelu)
        except Exception as err:  # network, hub and cache errors have no common base class
            raise WeightsNotFoundError(f"open_clip could not fetch the '{pretrained}' weights of {name} "
                                       f"({type(err).__name__}, no network?): "
                                       f"{_missing_weights_message(name, key)}.") from err
    if not os.path.isfile(pretrained):
        raise WeightsNotFoundError(f"CLIP weights '{pretrained}' not found (neither a file nor an open_clip tag of "
                                   f"{name}): {_missing_weights_message(name, key)}.")
    try:
        if _is_torchscript(pretrained):  # OpenAI's release: builds the architecture from the state dict itself
            model = open_clip.load_openai_model(pretrained, precision="fp32", device="cpu")
            expected = open_clip.get_model_config(name)["embed_dim"]
            if int(model.text_projection.shape[-1]) != expected:
                raise ConfigError(f"{pretrained} holds a CLIP with {model.text_projection.shape[-1]}-d embeddings, "
                                  f"not {name} ({expected}-d): set {key}.name to the model of that file.")
            return model
        return open_clip.create_model(name, pretrained=pretrained)
    except ConfigError:
        raise
    except Exception as err:  # corrupt, truncated or foreign files fail in many ways inside open_clip and torch
        raise ConfigError(f"CLIP weights '{pretrained}' are unreadable or do not fit open_clip model {name} "
                          f"({type(err).__name__}): "
                          f"set {key}.name to the model of that file or {key}.pretrained to a {name} "
                          f"checkpoint.") from err


def load_clip(name: str = DEFAULT_CLIP, pretrained: Optional[str] = None, frozen: bool = True,
              device: Union[str, torch.device] = "cpu", key: str = CFG_KEY) -> ClipModel:
    """Build the open_clip model ``name`` with weights from ``pretrained`` (offline unless it is a tag).

    Args:
        name: open_clip model name (``ViT-B-32``; ``tiny-clip-test`` is this package's tiny test model).
        pretrained: local checkpoint path, open_clip tag, or ``none``/None for random weights.
        frozen: put the model in eval mode with gradients off (the text and image towers of CLIP2Point).
        device: where the model goes.
        key: the config key of this block, named in error messages.

    Raises:
        WeightsNotFoundError: the file does not exist, or a tag could not be downloaded.
        ConfigError: unknown model name, or weights of another architecture.
    """
    weights = "none" if pretrained is None or str(pretrained).lower() in RANDOM_INIT else str(pretrained)
    model = _create(name, None if weights == "none" else weights, key)
    model = model.float().to(device)
    if frozen:
        model.eval().requires_grad_(False)
    preprocess = open_clip.get_model_preprocess_cfg(model)
    size = preprocess.get("size", model.visual.image_size)
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    mean = tuple(float(v) for v in preprocess.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(float(v) for v in preprocess.get("std", open_clip.OPENAI_DATASET_STD))
    context = getattr(model, "context_length", None)
    tokenizer = open_clip.get_tokenizer(name, context_length=context)
    LOGGER.info(f"CLIP {name} ({weights}): {size}px input, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
                f"parameters")
    return ClipModel(model=model, name=name, weights=weights, tokenizer=tokenizer, image_mean=mean, image_std=std,
                     image_size=size)


def load_clip_from_cfg(clip_cfg: Optional[Mapping[str, Any]], device: Union[str, torch.device] = "cpu",
                       key: str = CFG_KEY) -> ClipModel:
    """:func:`load_clip` from a ``{name, pretrained}`` config block (``model.clip``).

    Args:
        clip_cfg: the block; ``name`` defaults to :data:`DEFAULT_CLIP`, ``pretrained`` is required (``none`` for
            random).
        device: where the model goes.
        key: the block's config key, for error messages.
    """
    if not isinstance(clip_cfg, Mapping):
        raise ConfigError(f"{key} is not set: give it name (e.g. {DEFAULT_CLIP}) and pretrained (a local checkpoint "
                          f"path, an open_clip tag, or none).")
    unknown = set(clip_cfg) - {"name", "pretrained", "frozen"}
    if unknown:
        raise ConfigError(f"Unknown key(s) {', '.join(sorted(unknown))} in {key}: use name, pretrained and frozen.")
    if "pretrained" not in clip_cfg:
        raise ConfigError(f"{key}.pretrained is not set: set it to a local checkpoint path of "
                          f"{clip_cfg.get('name', DEFAULT_CLIP)}, an open_clip tag, or none for random weights.")
    return load_clip(str(clip_cfg.get("name") or DEFAULT_CLIP), clip_cfg.get("pretrained"),
                     frozen=bool(clip_cfg.get("frozen", True)), device=device, key=key)


def trainable_visual_copy(clip: ClipModel) -> nn.Module:
    """A deep copy of the visual tower with gradients on, in train mode (CLIP2Point's depth encoder E_d).

    Args:
        clip: the loaded CLIP; its own visual tower is left untouched.
    """
    visual = copy.deepcopy(clip.model.visual)
    visual.requires_grad_(True)
    return visual.train()


def load_depth_encoder(visual: nn.Module, path: str, key: str = "pretrained_path",
                       state: Optional[Mapping[str, Any]] = None) -> nn.Module:
    """Load the :data:`DEPTH_ENCODER_KEY` state dict of a CLIP2Point pre-training checkpoint into ``visual``.

    Args:
        visual: a visual tower of the same open_clip model (e.g. ``ClipModel.visual`` or a copy of it).
        path: the checkpoint file.
        key: the config key that named ``path``, for error messages.
        state: the checkpoint already read from ``path`` (None: read it here).

    Raises:
        WeightsNotFoundError: ``path`` does not exist.
        BadCheckpointError: the file is not a readable checkpoint dict, or is unsafe to unpickle.
        ConfigError: the file holds no depth encoder, or one of another architecture.
    """
    if state is None:
        state = read_checkpoint(path, key, "the ckpt_best.pth of a CLIP2Point pre-training run, or to null to use "
                                           "the CLIP visual encoder")
    weights = state.get(DEPTH_ENCODER_KEY)
    if not isinstance(weights, dict):
        raise ConfigError(f"{path} has no '{DEPTH_ENCODER_KEY}' entry: set {key} to a checkpoint of a CLIP2Point "
                          f"pre-training run, or to null to use the CLIP visual encoder.")
    try:
        visual.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise ConfigError(f"The depth encoder in {path} does not fit the visual tower of model.clip.name "
                          f"({str(err).splitlines()[0]}): set model.clip.name to the CLIP it was pre-trained "
                          f"from.") from err
    LOGGER.info(f"depth encoder: {len(weights)} tensors from {path}")
    return visual


def depth_encoder_state(visual: nn.Module) -> Dict[str, torch.Tensor]:
    """``{DEPTH_ENCODER_KEY: state dict}``, the checkpoint entry that :func:`load_depth_encoder` reads.

    Args:
        visual: the depth encoder (a CLIP visual tower).
    """
    return {DEPTH_ENCODER_KEY: {k: v.detach().cpu() for k, v in visual.state_dict().items()}}


def encode_views(encoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Image features (B, V, D) of views (B, V, 3, H, W), one forward pass over all B x V images.

    Args:
        encoder: a CLIP visual tower (images -> (N, D)).
        images: CLIP-normalised views.
    """
    b, v = images.shape[:2]
    return encoder(images.flatten(0, 1)).float().view(b, v, -1)
