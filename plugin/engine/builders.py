"""Build models, dataloaders, optimizers, schedulers and losses from a config via OpenPoints.

Each builder checks the registry ``NAME`` first, so a wrong name is one sentence listing the valid
ones instead of a ``KeyError`` deep inside OpenPoints.
"""
import contextlib
import copy
import random
from typing import Any, Dict, Iterator, Optional

import numpy as np
import torch
from openpoints.dataset import build_dataloader_from_cfg
from openpoints.dataset.build import DATASETS
from openpoints.loss import build_criterion_from_cfg
from openpoints.loss.build import LOSS
from openpoints.models import build_model_from_cfg
from openpoints.models.build import MODELS
from openpoints.optim import build_optimizer_from_cfg
from openpoints.scheduler import build_scheduler_from_cfg
from openpoints.transforms.transforms_factory import DataTransforms
from openpoints.utils import EasyConfig
from openpoints.utils.registry import Registry

from ..errors import ConfigError, DataNotFoundError


def check_name(args: Optional[Dict[str, Any]], registry: Registry, key: str) -> None:
    """Raise :class:`ConfigError` unless ``args.NAME`` is registered in ``registry``."""
    if not isinstance(args, dict) or "NAME" not in args:
        raise ConfigError(f"{key}.NAME is not set: set it to one of {', '.join(sorted(registry.module_dict))}.")
    if registry.get(args["NAME"]) is None:
        raise ConfigError(f"Unknown {key}.NAME '{args['NAME']}': set it to one of "
                          f"{', '.join(sorted(registry.module_dict))}.")


def _check_model_names(args: Dict[str, Any], key: str) -> None:
    """Check ``NAME`` of a model config and of its nested ``*_args`` that name models."""
    check_name(args, MODELS, key)
    for sub in ("encoder_args", "decoder_args", "cls_args"):
        if isinstance(args.get(sub), dict) and "NAME" in args[sub]:
            check_name(args[sub], MODELS, f"{key}.{sub}")


def build_model(cfg: Dict[str, Any]) -> torch.nn.Module:
    """The model of ``cfg.model`` (OpenPoints ``MODELS``)."""
    _check_model_names(cfg.get("model"), "model")
    return build_model_from_cfg(cfg.model)


def build_dataloader(cfg: Dict[str, Any], split: str, batch_size: Optional[int] = None,
                     shuffle: Optional[bool] = None) -> torch.utils.data.DataLoader:
    """The single-process dataloader of ``split`` from ``cfg.dataset`` and ``cfg.datatransforms``.

    Args:
        cfg: the run config.
        split: train, val or test.
        batch_size: defaults to ``batch_size`` for train and ``val_batch_size`` otherwise.
        shuffle: override the default (shuffle only the train split), e.g. for feature extraction.
    """
    check_name(cfg.dataset.get("common"), DATASETS, "dataset.common")
    for name in (cfg.get("datatransforms") or {}).get(split) or []:
        if DataTransforms.get(name) is None:
            raise ConfigError(f"Unknown transform '{name}' in datatransforms.{split}: use names from "
                              f"{', '.join(sorted(DataTransforms.module_dict))}.")
    if batch_size is None:
        batch_size = cfg.batch_size if split == "train" else cfg.get("val_batch_size", cfg.batch_size)
    # a copy: OpenPoints' builder writes the built transform objects into the dataset config it is given
    loader = build_dataloader_from_cfg(batch_size, copy.deepcopy(cfg.dataset), cfg.dataloader,
                                       datatransforms_cfg=cfg.get("datatransforms"), split=split,
                                       distributed=False)
    if shuffle is not None and shuffle != (split == "train"):
        loader = torch.utils.data.DataLoader(loader.dataset, batch_size=batch_size, shuffle=shuffle,
                                             num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                                             drop_last=False)
    return loader


def check_training_steps(samples: int, batch_size: int, drop_last: bool, what: str = "train split") -> int:
    """Steps per epoch of a training set; an epoch of zero steps is refused before the first epoch.

    Args:
        samples: the training samples.
        batch_size: samples per step.
        drop_last: whether an incomplete last batch is dropped (OpenPoints' train loaders drop it).
        what: the training set, for the message (e.g. ``train split``).

    Raises:
        DataNotFoundError: the training set is empty.
        ConfigError: every batch would be dropped (fewer samples than ``batch_size``).
    """
    steps = samples // batch_size if drop_last else -(-samples // batch_size)
    if samples == 0:
        raise DataNotFoundError(f"The {what} holds no samples, so training would take no step: check "
                                f"dataset.common.data_dir and the split list.")
    if steps == 0:
        raise ConfigError(f"The {what} has {samples} samples, fewer than batch_size={batch_size} (incomplete batches "
                          f"are dropped), so training would take no step: set batch_size to at most {samples}.")
    return steps


def check_training_loader(loader: torch.utils.data.DataLoader, what: str = "train split") -> int:
    """:func:`check_training_steps` of ``loader`` (its dataset size, batch size and ``drop_last``).

    Args:
        loader: the training loader.
        what: the training set, for the message.
    """
    return check_training_steps(len(loader.dataset), loader.batch_size, loader.drop_last, what)


def build_criterion(cfg: Dict[str, Any]) -> torch.nn.Module:
    """The loss of ``cfg.criterion_args`` (OpenPoints ``LOSS``)."""
    check_name(cfg.get("criterion_args"), LOSS, "criterion_args")
    return build_criterion_from_cfg(cfg.criterion_args)


def build_optimizer(cfg: Dict[str, Any], model: torch.nn.Module) -> torch.optim.Optimizer:
    """OpenPoints' optimizer factory with ``lr`` and ``cfg.optimizer`` (NAME, weight_decay, ...)."""
    return build_optimizer_from_cfg(model, lr=cfg.lr, **cfg.optimizer)


def build_scheduler(cfg: Dict[str, Any], optimizer: torch.optim.Optimizer):
    """OpenPoints' scheduler factory (``sched``, ``epochs``, ``warmup_epochs``, ``min_lr``, ``t_max``).

    ``t_max: null`` means one cosine period over all ``epochs``.
    """
    args = EasyConfig(cfg)
    if args.get("t_max") is None:
        args.t_max = cfg.epochs
    return build_scheduler_from_cfg(args, optimizer)


def select_device(cfg: Dict[str, Any]) -> torch.device:
    """``cfg.device`` if set, else CUDA when available, else CPU."""
    wanted = cfg.get("device") or "auto"
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(wanted).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={wanted} was requested but no CUDA GPU is visible: set device=cpu or device=auto.")
    return torch.device(wanted)


def seed_everything(seed: Optional[int]) -> None:
    """Seed Python, NumPy and torch so that a CPU run is reproducible (no-op for ``None``)."""
    if seed is None:
        return
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run a block with Python's, NumPy's and torch's RNGs seeded with ``seed``, and restore them after.

    A pass that is not training (validation, feature extraction) then draws the same numbers in every
    segment of a resumed run and leaves the training stream as it found it, so a resumed run continues
    exactly as an uninterrupted one.
    """
    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng():
        try:
            seed_everything(seed)
            yield
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)
