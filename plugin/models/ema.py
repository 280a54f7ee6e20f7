"""Exponential moving averages of a model: the EMA of trained weights kept in checkpoints, and the EMA
teacher of Cross-MoST, whose momentum ramps up over the first iterations.

The averaging itself is timm's :class:`~timm.utils.ModelEmaV3`: at every update each floating-point
tensor of the model's ``state_dict`` becomes ``ema = m * ema + (1 - m) * w``, integer buffers (BatchNorm's
``num_batches_tracked``) are copied, and with ``exclude_buffers=True`` every buffer (BatchNorm's running
statistics too) is copied instead of averaged. This module adds the momentum schedule, the checkpoint state
and the config factory.
"""
import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Union

import torch
from timm.utils import ModelEmaV3, unwrap_model
from torch import nn

from ..errors import BadCheckpointError, ConfigError

SHAPES = ("linear", "cosine")
EMA_KEYS = ("decay", "device", "enabled", "exclude_buffers", "momentum")
MOMENTUM_KEYS = ("end", "ramp_steps", "shape", "start")
STATE_KEYS = ("module", "updates", "momentum", "rounding_rng")


def _check_momentum(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}.")


@dataclass(frozen=True)
class MomentumSchedule:
    """EMA momentum per optimizer step: from ``start`` at step 0 to ``end`` at ``ramp_steps``, then constant.

    Args:
        start: momentum at step 0, in [0, 1).
        end: momentum from step ``ramp_steps`` on, in [0, 1).
        ramp_steps: optimizer steps of the ramp; 0 gives ``end`` from the first step.
        shape: ``linear`` interpolation, or ``cosine`` (half a cosine: flat at both ends of the ramp).
    """

    start: float
    end: float
    ramp_steps: int = 0
    shape: str = "linear"

    def __post_init__(self) -> None:
        _check_momentum("start", self.start)
        _check_momentum("end", self.end)
        if isinstance(self.ramp_steps, bool) or not isinstance(self.ramp_steps, int) or self.ramp_steps < 0:
            raise ValueError(f"ramp_steps must be an integer >= 0, got {self.ramp_steps!r}.")
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {self.shape!r}.")

    @classmethod
    def constant(cls, momentum: float) -> "MomentumSchedule":
        """The schedule that gives ``momentum`` at every step."""
        return cls(start=momentum, end=momentum)

    def __call__(self, step: int) -> float:
        """The momentum at optimizer step ``step`` (an integer >= 0)."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an integer >= 0, got {step!r}.")
        if step >= self.ramp_steps:
            return float(self.end)
        progress = step / self.ramp_steps
        if self.shape == "cosine":
            progress = (1.0 - math.cos(math.pi * progress)) / 2.0
        return float(self.start + (self.end - self.start) * progress)


class ModelEma:
    """An exponential moving average of a model's weights, updated with a scheduled momentum.

    Create it after the model is on its device; a DDP (or ``torch.compile``) wrapper is unwrapped, so the
    average is a copy of the plain module. It is a plain object, not an ``nn.Module``, so that a model
    holding it as an attribute does not hand the averaged parameters to its optimizer.

    Args:
        model: the model to average (its current weights start the average).
        momentum: a fixed decay, or a :class:`MomentumSchedule` of the optimizer step.
        device: keep the average on this device instead of the model's (e.g. ``"cpu"`` to save memory).
        exclude_buffers: copy the buffers (BatchNorm statistics) at each update instead of averaging them.
    """

    def __init__(self, model: nn.Module, momentum: Union[float, MomentumSchedule],
                 device: Optional[Union[str, torch.device]] = None, exclude_buffers: bool = False) -> None:
        if not isinstance(momentum, MomentumSchedule):
            _check_momentum("momentum", momentum)
            momentum = MomentumSchedule.constant(momentum)
        self.schedule = momentum
        device = torch.device(device) if device is not None else None
        self._ema = ModelEmaV3(unwrap_model(model), decay=momentum(0), device=device,
                               exclude_buffers=exclude_buffers)
        self._ema.module.requires_grad_(False)
        self.updates = 0
        self._momentum = momentum(0)

    @property
    def module(self) -> nn.Module:
        """The averaged model, in eval mode and without gradients."""
        return self._ema.module

    @property
    def momentum(self) -> float:
        """The momentum of the last update (of step 0 before any), for logging."""
        return self._momentum

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Average ``model``'s current weights in with the momentum the schedule gives at optimizer ``step``."""
        self._momentum = self.schedule(step)
        # timm's update(model) without a step applies ModelEmaV3.decay as it is
        self._ema.decay = self._momentum
        self._ema.update(unwrap_model(model))
        self.updates += 1

    def _rounding_rng(self) -> Optional[torch.Generator]:
        # the RNG of stochastic rounding for bfloat16 averages, in timm versions that have it
        return getattr(self._ema, "_sr_generator", None)

    def state_dict(self) -> Dict[str, Any]:
        """The averaged weights, the update count and the last momentum, for a checkpoint."""
        rng = self._rounding_rng()
        return {"module": self.module.state_dict(), "updates": self.updates, "momentum": self._momentum,
                "rounding_rng": None if rng is None else rng.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave, so a resumed run averages exactly as an uninterrupted one."""
        if not isinstance(state, Mapping) or set(state) != set(STATE_KEYS):
            found = ", ".join(map(str, state)) if isinstance(state, Mapping) else type(state).__name__
            raise BadCheckpointError(f"An EMA state must hold the keys {', '.join(STATE_KEYS)}, "
                                     f"but this one holds {found}.")
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self._momentum = float(state["momentum"])
        rng = self._rounding_rng()
        if rng is not None and state["rounding_rng"] is not None:
            rng.set_state(state["rounding_rng"])


def _unknown(name: str, keys: Mapping[str, Any], valid: tuple) -> None:
    wrong = sorted(set(keys) - set(valid))
    if wrong:
        raise ConfigError(f"Unknown key {name}.{wrong[0]}: use only {', '.join(valid)}.")


def build_ema(cfg: Optional[Mapping[str, Any]], model: nn.Module, name: str = "ema") -> Optional[ModelEma]:
    """The EMA a config block asks for, or ``None`` when the block is null, false or ``enabled: false``.

    The block holds either a fixed ``decay: 0.9998`` or a schedule
    ``momentum: {start: 0.99, end: 0.9998, ramp_steps: 1000, shape: cosine}``, and optionally
    ``device`` and ``exclude_buffers`` (see :class:`ModelEma`).

    Args:
        cfg: the config block.
        model: the model to average.
        name: the block's key in the config, for error messages.
    """
    if cfg is None or cfg is False:
        return None
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{name} must be a mapping with decay or momentum, or null to disable it, got {cfg!r}.")
    _unknown(name, cfg, EMA_KEYS)
    if not cfg.get("enabled", True):
        return None
    decay, block = cfg.get("decay"), cfg.get("momentum")
    if (decay is None) == (block is None):
        raise ConfigError(f"{name} needs exactly one of {name}.decay (a fixed momentum) or {name}.momentum "
                          f"(a schedule with {', '.join(MOMENTUM_KEYS)}).")
    if not isinstance(cfg.get("exclude_buffers", False), bool):
        raise ConfigError(f"{name}.exclude_buffers must be true or false, got {cfg['exclude_buffers']!r}.")
    if decay is not None:
        try:
            _check_momentum("decay", decay)
        except ValueError as e:
            raise ConfigError(f"{name}.{e}") from None
        momentum = decay
    else:
        if not isinstance(block, Mapping):
            raise ConfigError(f"{name}.momentum must be a mapping with keys {', '.join(MOMENTUM_KEYS)}, "
                              f"got {block!r}; use {name}.decay for a fixed momentum.")
        _unknown(f"{name}.momentum", block, MOMENTUM_KEYS)
        missing = [key for key in ("start", "end") if key not in block]
        if missing:
            raise ConfigError(f"{name}.momentum needs {' and '.join(missing)}: set it, e.g. "
                              f"{{start: 0.99, end: 0.9998, ramp_steps: 1000, shape: cosine}}.")
        try:
            momentum = MomentumSchedule(**block)
        except ValueError as e:
            raise ConfigError(f"{name}.momentum.{e}") from None
    return ModelEma(model, momentum, device=cfg.get("device"), exclude_buffers=cfg.get("exclude_buffers", False))
