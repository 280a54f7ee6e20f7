"""Encoder weights from checkpoints, strict about missing tensors.

Accepted checkpoints:

- pre-training: ``{"encoder": <encoder state dict>, "encoder_args": ..., ...}``;
- supervised: ``{"model": <BaseCls state dict with encoder.* keys>, ...}``;
- a bare state dict, of the encoder itself or of a model with ``encoder.*`` keys;
- a published Point-BERT, Point-MAE, ULIP, Point-M2AE or I2P-MAE checkpoint, recognised by its keys and
  renamed for PointViTEncoder / PointM2AEEncoder (:mod:`plugin.models.backbones.published_weights`).

A ``module.`` prefix (``DataParallel``) is dropped.
"""
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List

import torch

from ..errors import ConfigError
from ..models.backbones.published_weights import (ConversionReport, checkpoint_weights, convert_published,
                                                  detect_layout, load_converted)
from .run_folder import load_checkpoint

LOGGER = logging.getLogger("plugin")
ENCODER_PREFIX = "encoder."


@dataclass
class LoadReport:
    """What :func:`load_into_encoder` did.

    Args:
        path: the checkpoint.
        loaded: names of the encoder tensors (parameters and buffers) that were loaded.
        unexpected: names of checkpoint tensors the encoder does not have (ignored).
        published: the model of a published checkpoint's layout; empty for this project's checkpoints.
        ignored: a published checkpoint's tensors dropped on purpose (decoder, heads, ...).
        kept: encoder tensors a published layout does not hold, left at their initialisation.
    """

    path: str
    loaded: List[str]
    unexpected: List[str] = field(default_factory=list)
    published: str = ""
    ignored: List[str] = field(default_factory=list)
    kept: List[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Number of encoder tensors loaded."""
        return len(self.loaded)

    def summary(self) -> str:
        """One line: the count and the loaded tensors grouped by top-level module."""
        groups = Counter(name.split(".")[0] for name in self.loaded)
        text = f"loaded {self.count} encoder tensors from {self.path} (" + ", ".join(
            f"{module}.*: {n}" for module, n in groups.items()) + ")"
        if self.published:
            text += f"; a {self.published} checkpoint, {len(self.ignored)} of its tensors ignored on purpose"
        if self.kept:
            text += f"; kept at initialisation: {', '.join(self.kept)}"
        if self.unexpected:
            text += f"; ignored {len(self.unexpected)} unexpected (first: {', '.join(self.unexpected[:3])})"
        return text


class PublishedEncoderState(dict):
    """An encoder state dict converted from a published checkpoint; ``report`` tells how."""

    def __init__(self, state: Dict[str, torch.Tensor], report: ConversionReport):
        super().__init__(state)
        self.report = report


def _strip_prefix(state: Dict[str, Any], prefix: str) -> Dict[str, Any]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_encoder_state(path: str, key: str) -> Dict[str, torch.Tensor]:
    """The encoder state dict held by checkpoint ``path`` (see the module docstring for the layouts).

    Args:
        path: the checkpoint file.
        key: the config key that named it (``load_path``, ``pretrained_path``), for error messages.

    Raises:
        WeightsNotFoundError: ``path`` is not set or does not exist.
        BadCheckpointError: the file is not a readable checkpoint dict, or is unsafe to unpickle.
        ConfigError: the checkpoint holds no encoder tensors.
    """
    state = load_checkpoint(path, key)
    if isinstance(state.get("encoder"), dict):
        return _strip_prefix(dict(state["encoder"]), "module.")
    layout = detect_layout(checkpoint_weights(state))
    if layout is not None:
        return PublishedEncoderState(*convert_published(state, layout))
    model = _strip_prefix(dict(state.get("model", state)), "module.")
    encoder = {k[len(ENCODER_PREFIX):]: v for k, v in model.items() if k.startswith(ENCODER_PREFIX)}
    if not encoder and "model" not in state:  # a bare encoder state dict
        encoder = {k: v for k, v in model.items() if torch.is_tensor(v)}
    if not encoder:
        raise ConfigError(f"Checkpoint '{path}' holds no encoder tensors (top-level keys: "
                          f"{', '.join(map(str, list(state)[:8]))}): set {key} to a pre-training checkpoint "
                          f"('encoder') or a supervised one ('model' with encoder.* tensors).")
    return encoder


def load_into_encoder(encoder: torch.nn.Module, state: Dict[str, torch.Tensor], path: str) -> LoadReport:
    """Copy ``state`` into ``encoder``: every encoder tensor must be present with its shape.

    A :class:`PublishedEncoderState` loads strictly: besides the tensors its layout does not hold (kept at
    their initialisation), every encoder tensor must be in it, and every tensor of it must be used.

    Args:
        encoder: the encoder module (e.g. ``BaseCls.encoder``).
        state: an encoder state dict, e.g. from :func:`load_encoder_state`.
        path: the checkpoint it came from, named in errors and in the report.

    Raises:
        ConfigError: encoder tensors missing from ``state``, or of another shape.
    """
    if isinstance(state, PublishedEncoderState):
        done = load_converted(encoder, state, state.report, path)
        return LoadReport(path, done.loaded, published=state.report.title, ignored=done.ignored, kept=done.kept)
    expected = encoder.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise ConfigError(f"Checkpoint '{path}' lacks {len(missing)} of the encoder's {len(expected)} tensors "
                          f"(first: {', '.join(missing[:3])}): use a checkpoint of the same model.encoder_args.")
    wrong = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        raise ConfigError(f"Checkpoint '{path}' has encoder tensor {wrong[0]} of shape {tuple(state[wrong[0]].shape)} "
                          f"where the encoder has {tuple(expected[wrong[0]].shape)} ({len(wrong)} differ): use a "
                          f"checkpoint of the same model.encoder_args.")
    encoder.load_state_dict({k: state[k] for k in expected}, strict=True)
    return LoadReport(path, list(expected), sorted(k for k in state if k not in expected))


def load_encoder_weights(model: torch.nn.Module, path: str, key: str = "load_path") -> int:
    """Load the encoder tensors of checkpoint ``path`` into ``model.encoder``; returns how many loaded."""
    report = load_into_encoder(model.encoder, load_encoder_state(path, key), path)
    LOGGER.info(report.summary())
    return report.count
