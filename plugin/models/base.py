"""The pretext-model contract: what ``mode=pretrain`` (and the modes after it) may call on a model.

A pretext model is an ``nn.Module`` registered in OpenPoints ``MODELS`` that subclasses
:class:`PretextModel`. The engine calls only what this class declares and never probes a model with
``getattr``: a capability a subclass does not have is said by a class attribute, not by a missing method.

Required:

- ``forward(batch) -> (loss, logs)``: ``loss`` a scalar tensor to minimise, ``logs`` a flat dict of
  Python floats (``loss`` among them); the pre-training loop averages every entry over the epoch.
- ``export_state() -> dict``: the checkpoint entries downstream modes load, with the key named by the
  class attribute :attr:`PretextModel.exports` among them (``encoder`` with ``encoder_args`` for an
  OpenPoints point encoder, read by ``svm``/``extract``/``finetune``/``test``; ``depth_encoder`` with
  ``clip`` for a CLIP visual tower on depth maps, read by ``zeroshot``/``fewshot``). Pre-training
  checkpoints record ``exports`` next to these entries (:meth:`PretextModel.checkpoint_entries`).

Optional, announced by class attributes:

- ``param_groups() -> [ParamGroup, ...]``: parameters that train with another learning rate or weight
  decay than ``cfg.lr`` and the optimizer's own decay (default: none, every parameter trains alike);
- ``supports_zero_shot = True``: ``encode_3d(batch)`` gives features (B, D) or per view (B, V, D) in the
  space of ``encode_text(class_names)`` (C, D); zero-shot logits are their cosine similarities averaged
  over the views (:func:`plugin.clip.zero_shot_logits`). ``load_export(state, path)`` loads the export
  of a pre-training checkpoint back into the model, so ``mode=zeroshot`` with ``model.NAME`` set
  evaluates any such model;
- ``supports_validation = True``: ``validation_logits(batch, class_names)`` gives logits (B, C) on which
  ``pretrain.select=zeroshot`` chooses ``ckpt_best.pth``;
- ``supports_retrieval = True`` (with ``supports_zero_shot``): ``encode_image(batch)`` gives image features
  (B, D) in the space of ``encode_3d``, so ``mode=retrieval`` ranks shapes for images and images for shapes.

A subclass that sets a capability attribute but does not override its methods fails at class definition.
"""
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..errors import ConfigError

Batch = Dict[str, Any]

# what a downstream mode reads from a pre-training checkpoint: the exported key it needs
EXPORTS = ("encoder", "depth_encoder")


@dataclass
class ParamGroup:
    """Parameters that train with their own learning rate or weight decay.

    Args:
        name: what the group is, for messages (``image``, ``layer_3``, ...).
        params: the group's parameters; frozen ones are left out by the optimizer.
        lr_key: a config key whose value, when set, replaces ``cfg.lr`` for the group (``lr_image``).
        lr_scale: multiplier of the group's learning rate (layer-wise decay).
        weight_decay_scale: multiplier of the optimizer's weight decay for the group.
    """

    name: str
    params: List[nn.Parameter]
    lr_key: Optional[str] = None
    lr_scale: float = 1.0
    weight_decay_scale: float = 1.0


class PretextModel(nn.Module):
    """Base class of the pretext models; see the module docstring for the contract.

    Class attributes:
        exports: the checkpoint key of the export that downstream modes load (one of :data:`EXPORTS`).
        supports_zero_shot: whether :meth:`encode_3d`, :meth:`encode_text` and :meth:`load_export` are implemented.
        supports_validation: whether :meth:`validation_logits` is implemented.
        supports_retrieval: whether :meth:`encode_image` is implemented.
    """

    exports: ClassVar[str] = "encoder"
    supports_zero_shot: ClassVar[bool] = False
    supports_validation: ClassVar[bool] = False
    supports_retrieval: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.exports not in EXPORTS:
            raise TypeError(f"{cls.__name__}.exports is '{cls.exports}': set it to one of {', '.join(EXPORTS)}.")
        needs = {"supports_zero_shot": ("encode_3d", "encode_text", "load_export"),
                 "supports_validation": ("validation_logits",), "supports_retrieval": ("encode_image",)}
        for flag, methods in needs.items():
            missing = [m for m in methods if getattr(cls, flag) and getattr(cls, m) is getattr(PretextModel, m)]
            if missing:
                raise TypeError(f"{cls.__name__} sets {flag} but does not implement {', '.join(missing)}.")

    def forward(self, batch: Batch) -> Tuple[torch.Tensor, Dict[str, float]]:
        """``(loss, logs)`` of one batch: a scalar loss and a flat dict of floats."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(batch) -> (loss, logs).")

    def param_groups(self) -> List[ParamGroup]:
        """Parameters with their own lr or weight decay; the rest train with ``cfg.lr``. Default: none."""
        return []

    def export_state(self) -> Dict[str, Any]:
        """Checkpoint entries for downstream modes, the key :attr:`exports` among them."""
        raise NotImplementedError(f"{type(self).__name__} must implement export_state().")

    def checkpoint_entries(self) -> Dict[str, Any]:
        """:meth:`export_state` plus ``exports`` (the key downstream modes read), as a checkpoint stores them."""
        entries = self.export_state()
        if self.exports not in entries:
            raise TypeError(f"{type(self).__name__}.export_state() has no '{self.exports}' entry, which its "
                            f"exports attribute names.")
        return {**entries, "exports": self.exports}

    def load_export(self, state: Dict[str, Any], path: str, key: str = "pretrained_path") -> None:
        """Load the :attr:`exports` entry of a checkpoint ``state`` (read from ``path``, named by ``key``) into
        the model (``supports_zero_shot``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot load its export back (supports_zero_shot is False).")

    def encode_3d(self, batch: Batch) -> torch.Tensor:
        """Features (B, D), or per view (B, V, D), of a batch's clouds in the text space (``supports_zero_shot``)."""
        raise NotImplementedError(f"{type(self).__name__} has no zero-shot encoders (supports_zero_shot is False).")

    def encode_text(self, class_names: Sequence[str]) -> torch.Tensor:
        """Class embeddings (C, D) of ``class_names`` (``supports_zero_shot``)."""
        raise NotImplementedError(f"{type(self).__name__} has no zero-shot encoders (supports_zero_shot is False).")

    def encode_image(self, batch: Batch) -> torch.Tensor:
        """Image features (B, D) of a batch's images in the space of :meth:`encode_3d` (``supports_retrieval``)."""
        raise NotImplementedError(f"{type(self).__name__} has no image encoder (supports_retrieval is False).")

    def validation_logits(self, batch: Union[Batch, torch.Tensor], class_names: Sequence[str]) -> torch.Tensor:
        """Logits (B, C) for checkpoint selection (``supports_validation``).

        Args:
            batch: a batch with ``pos`` (B, N, 3), clouds centred and in the unit sphere, or ``pos`` itself.
            class_names: the C class names, in label order.
        """
        raise NotImplementedError(f"{type(self).__name__} has no validation logits (supports_validation is False).")


def batch_of(batch: Union[Batch, torch.Tensor]) -> Batch:
    """``batch`` as a dict: a tensor is taken as ``pos``."""
    return {"pos": batch} if isinstance(batch, torch.Tensor) else batch


def reject_unknown_keys(given: Mapping[str, Any], valid: Sequence[str], where: str, owner: str) -> None:
    """Raise :class:`ConfigError` naming the ``valid`` keys when a config block ``given`` holds another one.

    Args:
        given: the block's keys (e.g. a model constructor's leftover ``**kwargs``).
        valid: the keys the block takes.
        where: the block's config path, e.g. ``model`` or ``model.similarity``.
        owner: the class the block configures, for the message.
    """
    unknown = sorted(k for k in given if k not in valid)
    if unknown:
        raise ConfigError(f"Unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)} of {owner}: use "
                          f"{', '.join(f'{where}.{k}' for k in valid)}.")


def plain_config(value: Any) -> Any:
    """A config value as plain dicts and lists (a ``weights_only`` checkpoint cannot hold EasyConfig blocks)."""
    if isinstance(value, Mapping):
        return {str(k): plain_config(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_config(v) for v in value]
    return value
