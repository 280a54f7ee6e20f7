"""Build models, optimizers, schedulers and losses from a config via OpenPoints; the device and the seeds.

Each builder checks the registry ``NAME`` first, so a wrong name is one sentence listing the valid
ones instead of a ``KeyError`` deep inside OpenPoints. Dataloaders are built in :mod:`.data`.
"""
import contextlib
import random
from typing import Any, Dict, Iterator, Optional

import numpy as np
import torch
from openpoints.loss import build_criterion_from_cfg
from openpoints.loss.build import LOSS
from openpoints.models import build_model_from_cfg
from openpoints.models.build import MODELS
from openpoints.optim import build_optimizer_from_cfg
from openpoints.scheduler import build_scheduler_from_cfg
from openpoints.utils import EasyConfig
from openpoints.utils.registry import Registry

from ..errors import ConfigError
from ..models.base import PretextModel


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


def build_criterion(cfg: Dict[str, Any]) -> torch.nn.Module:
    """The loss of ``cfg.criterion_args`` (OpenPoints ``LOSS``)."""
    check_name(cfg.get("criterion_args"), LOSS, "criterion_args")
    return build_criterion_from_cfg(cfg.criterion_args)


def build_optimizer(cfg: Dict[str, Any], model: torch.nn.Module) -> torch.optim.Optimizer:
    """OpenPoints' optimizer factory with ``lr`` and ``cfg.optimizer`` (NAME, weight_decay, ...)."""
    return build_optimizer_from_cfg(model, lr=cfg.lr, **cfg.optimizer)


def build_grouped_optimizer(cfg: Dict[str, Any], model: PretextModel) -> torch.optim.Optimizer:
    """OpenPoints' optimizer for ``cfg.optimizer``, regrouped by the model's ``param_groups()``.

    OpenPoints' factory resolves the optimizer class and its defaults from ``optimizer.NAME`` and
    groups the parameters by weight decay (none for biases and 1-d parameters); each of its groups is
    split into the parameters no model group lists (``lr``) and one part per model group (its
    ``lr_key``, e.g. ``lr_image``, or ``lr`` when that is unset, times ``lr_scale``; the weight decay
    times ``weight_decay_scale``). Frozen parameters are left out.
    """
    base = build_optimizer(cfg, model)
    model_groups = model.param_groups()
    owner = {id(p): i for i, group in enumerate(model_groups) for p in group.params}
    groups = []
    for group in base.param_groups:
        options = {k: v for k, v in group.items() if k != "params"}
        rest = [p for p in group["params"] if id(p) not in owner]
        if rest:
            groups.append({**options, "params": rest})
        for i, spec in enumerate(model_groups):
            params = [p for p in group["params"] if owner.get(id(p)) == i]
            if not params:
                continue
            extra: Dict[str, Any] = {"lr": ((cfg.get(spec.lr_key) if spec.lr_key else None) or cfg.lr) * spec.lr_scale}
            if spec.weight_decay_scale != 1.0 and "weight_decay" in options:
                extra["weight_decay"] = options["weight_decay"] * spec.weight_decay_scale
            groups.append({**options, "params": params, **extra})
    # regroup in place: re-calling the class with ``base.defaults`` fails where a default is no constructor
    # argument (torch's AdamW lists ``decoupled_weight_decay``)
    base.param_groups = []
    for group in groups:
        base.add_param_group(group)
    return base


def build_scheduler(cfg: Dict[str, Any], optimizer: torch.optim.Optimizer):
    """OpenPoints' scheduler factory (``sched``, ``epochs``, ``warmup_epochs``, ``warmup_lr``, ``min_lr``, ``t_max``).

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
