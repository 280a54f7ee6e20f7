"""The one training loop of every mode that trains (``train``, ``finetune``, ``pretrain``, ``gdpa``, ``fewshot``).

A mode gives the loop a step function (``step(batch) -> (loss, logs)``), an optional validation
function and a :class:`Selection` rule for ``ckpt_best.pth``; the loop owns, once:

- the forward/backward/update sequence under mixed precision (``amp``, :func:`resolve_amp`; a
  ``GradScaler`` for fp16), gradient accumulation (``grad_accum_steps``) and clipping (``grad_norm_clip``);
- NaN detection (:class:`~plugin.errors.TrainingDivergedError`);
- the scheduler: stepped per epoch (``sched_on_epoch: True``, OpenPoints' default) or after every
  update at the fractional epoch (``False``);
- DDP: the sampler's epoch, gradient synchronisation only on the update step, epoch figures averaged
  over the ranks (:mod:`.distributed`);
- validation every ``val_freq`` epochs and at the last one, ``ckpt_best.pth`` by the selection rule, and
  ``ckpt_latest.pth`` every epoch with the loop's own state (update count, scaler, selection, hooks),
  so a run resumed mid-training continues bit for bit on CPU;
- progress bars with ETA, and one log line per epoch with the share of the epoch spent waiting for data.

:class:`Hook` subclasses add behaviour without a copy of the loop (an EMA teacher, a temperature
clamp, a warm-up ramp): they are called before and after every step, epoch and validation, and
what their ``state_dict`` returns is saved in checkpoints.
"""
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..errors import ConfigError, TrainingDivergedError
from .data import progress
from .distributed import reduce_mean, set_epoch

LOGGER = logging.getLogger("plugin")
AMP_CHOICES = ("auto", "bf16", "fp16", "off")
StepFn = Callable[[Any], Tuple[torch.Tensor, Dict[str, float]]]


def resolve_amp(amp: Optional[str], device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of ``amp`` on ``device``; None: full precision.

    ``auto`` is bf16 on a CUDA device that supports it and off elsewhere (CPU autocast is slower than
    float32 for these models); ``bf16``/``fp16`` are honoured on any device.

    Args:
        amp: ``auto`` | ``bf16`` | ``fp16`` | ``off`` (None: ``auto``).
        device: the training device.
    """
    amp = "off" if amp is False else str(amp or "auto")  # YAML reads a bare off as False
    if amp not in AMP_CHOICES:
        raise ConfigError(f"Unknown amp '{amp}': set it to one of {', '.join(AMP_CHOICES)}.")
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]


class Hook:
    """Behaviour added to :class:`TrainingLoop` at fixed points; every method is a no-op by default.

    ``loop`` gives the model, optimizer, epoch and update count (``loop.updates``). A hook with state
    (an EMA) returns it from :meth:`state_dict`; it is saved in checkpoints under its ``name`` and
    given back to :meth:`load_state_dict` on resume.
    """

    name = "hook"

    def before_epoch(self, loop: "TrainingLoop", epoch: int) -> None:
        """Before the first step of ``epoch``."""

    def before_step(self, loop: "TrainingLoop", batch: Any) -> None:
        """Before the forward pass of every batch."""

    def after_step(self, loop: "TrainingLoop", logs: Dict[str, float]) -> None:
        """After every optimizer update (``loop.updates`` already counts it); ``logs``: the batch's figures."""

    def before_validation(self, loop: "TrainingLoop", epoch: int) -> None:
        """Before the validation of ``epoch``."""

    def after_validation(self, loop: "TrainingLoop", epoch: int, metrics: Dict[str, float]) -> None:
        """After the validation of ``epoch``; ``metrics`` may be extended."""

    def after_epoch(self, loop: "TrainingLoop", epoch: int, logs: Dict[str, float]) -> None:
        """After the training and validation of ``epoch``, before its checkpoints are chosen and written."""

    def state_dict(self) -> Optional[Dict[str, Any]]:
        """What a resumed run needs of this hook (None: nothing)."""
        return None

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class Selection:
    """Which epoch ``ckpt_best.pth`` holds: the best value of ``key`` in the epoch figures, or the last epoch.

    Args:
        key: the epoch figure compared (``val_oa``, ``loss``, ...); None: the last epoch.
        mode: ``max`` or ``min``.
    """

    def __init__(self, key: Optional[str], mode: str = "max"):
        self.key, self.mode = key, mode
        self.best = -math.inf if mode == "max" else math.inf
        self.best_epoch = 0

    def update(self, epoch: int, logs: Mapping[str, float], last: bool) -> bool:
        """Whether ``epoch`` becomes the selected one (an epoch without the figure is never chosen)."""
        if self.key is None:
            chosen = last
            self.best = float(logs.get("loss", math.nan)) if chosen else self.best
        elif self.key not in logs:
            return False
        else:
            value = float(logs[self.key])
            chosen = value > self.best if self.mode == "max" else value < self.best
            self.best = value if chosen else self.best
        if chosen:
            self.best_epoch = epoch
        return chosen

    def state_dict(self) -> Dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])


@dataclass
class LoopSettings:
    """The loop's keys of the run config.

    Args:
        epochs: the last epoch.
        grad_norm_clip: clip the gradient norm to this value (None: no clipping).
        grad_accum_steps: batches whose gradients add up to one update.
        sched_on_epoch: step the scheduler per epoch (True) or after every update (False).
        val_freq: validate every this many epochs (and at the last).
        amp: ``auto`` | ``bf16`` | ``fp16`` | ``off``.
    """

    epochs: int
    grad_norm_clip: Optional[float] = None
    grad_accum_steps: int = 1
    sched_on_epoch: bool = True
    val_freq: int = 1
    amp: str = "auto"

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> "LoopSettings":
        """The settings of a run config (missing keys take their defaults, as in configs of older runs)."""
        settings = cls(epochs=int(cfg["epochs"]), grad_norm_clip=cfg.get("grad_norm_clip") or None,
                       grad_accum_steps=int(1 if cfg.get("grad_accum_steps") is None else cfg["grad_accum_steps"]),
                       sched_on_epoch=bool(cfg.get("sched_on_epoch", True)), val_freq=int(cfg.get("val_freq") or 1),
                       amp="off" if cfg.get("amp") is False else str(cfg.get("amp") or "auto"))
        if settings.grad_accum_steps < 1:
            raise ConfigError(f"grad_accum_steps is {settings.grad_accum_steps}: set it to 1 or more batches per "
                              f"update.")
        return settings


class TrainingLoop:
    """Train ``model`` for the epochs ``start_epoch .. settings.epochs`` (see the module docstring).

    Args:
        model: what ``step`` runs (the DDP wrapper under ``torchrun``); its parameters are clipped.
        optimizer: updates the model.
        scheduler: an OpenPoints/timm scheduler (``step(epoch)``).
        settings: the loop's config keys.
        device: the training device (autocast's device type).
        step: ``step(batch) -> (loss, logs)`` for one raw batch of the loader; ``logs`` is a flat dict
            of floats (the loop adds ``loss``).
        save: ``save(name, epoch, loop_state)`` writes ``ckpt_best.pth``/``ckpt_latest.pth``; ``loop_state``
            is :meth:`state_dict`, to be stored under ``loop``.
        selection: the ``ckpt_best.pth`` rule.
        validate: ``validate(epoch) -> figures`` merged into the epoch's figures (None: no validation).
        hooks: behaviour added at the loop's fixed points.
        desc: the progress bar's label.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                 settings: LoopSettings, device: torch.device, step: StepFn,
                 save: Callable[[str, int, Dict[str, Any]], None], selection: Selection,
                 validate: Optional[Callable[[int], Dict[str, float]]] = None, hooks: Sequence[Hook] = (),
                 desc: str = "epoch"):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.settings, self.device, self.step_fn, self.save = settings, device, step, save
        self.selection, self.validate_fn, self.hooks, self.desc = selection, validate, list(hooks), desc
        self.amp_dtype = resolve_amp(settings.amp, device)
        fp16 = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        self.updates = 0  # optimizer updates since the run started, over all its segments
        self.epoch = 0
        self.history: List[Dict[str, float]] = []  # every finished epoch's figures, for history.json and the curves

    def state_dict(self) -> Dict[str, Any]:
        """The loop's resumable state: update count, scaler, selection and the hooks' states."""
        hooks = {hook.name: hook.state_dict() for hook in self.hooks}
        return {"updates": self.updates, "scaler": self.scaler.state_dict(), "selection": self.selection.state_dict(),
                "hooks": {name: state for name, state in hooks.items() if state is not None},
                "history": [dict(record) for record in self.history]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict` of a checkpoint."""
        self.updates = int(state.get("updates", 0))
        self.history = [dict(record) for record in state.get("history") or []]
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.selection.load_state_dict(state["selection"])
        for hook in self.hooks:
            if hook.name in (state.get("hooks") or {}):
                hook.load_state_dict(state["hooks"][hook.name])

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to the ``amp`` dtype (a no-op in full precision)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _no_sync(self, update: bool) -> contextlib.AbstractContextManager:
        """Under DDP, skip the gradient all-reduce on the batches that only accumulate."""
        if update or not isinstance(self.model, DistributedDataParallel):
            return contextlib.nullcontext()
        return self.model.no_sync()

    def _update(self, epoch: int, fraction: float) -> None:
        """Unscale, clip, step the optimizer and, per update, the scheduler at the fractional epoch."""
        if self.settings.grad_norm_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_norm_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.updates += 1
        if not self.settings.sched_on_epoch:
            self.scheduler.step(epoch - 1 + fraction)

    def train_epoch(self, loader: Iterable, epoch: int) -> Dict[str, float]:
        """One pass over ``loader``; the mean of every logged figure, plus ``data_wait`` (share of the epoch)."""
        self.model.train()
        if isinstance(loader, DataLoader):
            set_epoch(loader, epoch)  # a DistributedSampler's shuffle
        sums: Dict[str, float] = {}
        accumulate, batches = self.settings.grad_accum_steps, len(loader)
        bar = progress(loader, f"{self.desc} {epoch}/{self.settings.epochs}")
        started, waited, seen = time.perf_counter(), 0.0, 0
        self.optimizer.zero_grad(set_to_none=True)
        batch_start = time.perf_counter()
        for index, batch in enumerate(bar, 1):
            waited += time.perf_counter() - batch_start
            for hook in self.hooks:
                hook.before_step(self, batch)
            update = index % accumulate == 0 or index == batches
            group = min(accumulate, batches - (index - 1) // accumulate * accumulate)  # the last group may be shorter
            with self._no_sync(update):
                with self.autocast():
                    loss, logs = self.step_fn(batch)
                if not torch.isfinite(loss.detach()).all():
                    raise TrainingDivergedError(
                        f"The training loss became {loss.item()} at epoch {epoch}, batch {index}: lower lr, set "
                        f"grad_norm_clip, use amp=off, or check the data for outliers (ckpt_latest.pth holds epoch "
                        f"{epoch - 1}).")
                self.scaler.scale(loss / group).backward()  # the update follows the mean over the group
            logs = {"loss": float(loss.detach()), **logs}
            if update:
                self._update(epoch, index / batches)
                for hook in self.hooks:
                    hook.after_step(self, logs)
            seen += 1
            for key, value in logs.items():
                sums[key] = sums.get(key, 0.0) + value
            bar.set_postfix({**{k: f"{v / seen:.4f}" for k, v in sums.items() if k.startswith("loss")},
                             "lr": f"{self.optimizer.param_groups[0]['lr']:.2e}"})
            batch_start = time.perf_counter()
        means = {key: reduce_mean(value / max(seen, 1)) for key, value in sums.items()}
        means["data_wait"] = waited / max(time.perf_counter() - started, 1e-9)
        return means

    def run(self, loader: Iterable, start_epoch: int = 1) -> Dict[str, float]:
        """Train from ``start_epoch`` to the last epoch; returns the last epoch's figures (empty when none ran)."""
        settings, logs = self.settings, {}
        self.scheduler.step(start_epoch - 1)
        for epoch in range(start_epoch, settings.epochs + 1):
            self.epoch = epoch
            for hook in self.hooks:
                hook.before_epoch(self, epoch)
            logs = self.train_epoch(loader, epoch)
            last = epoch == settings.epochs
            if self.validate_fn is not None and (epoch % settings.val_freq == 0 or last):
                for hook in self.hooks:
                    hook.before_validation(self, epoch)
                metrics = self.validate_fn(epoch)
                for hook in self.hooks:
                    hook.after_validation(self, epoch, metrics)
                logs.update(metrics)
            for hook in self.hooks:
                hook.after_epoch(self, epoch, logs)
            self.history.append({"epoch": epoch, **logs, "lr": self.optimizer.param_groups[0]["lr"]})
            chosen = self.selection.update(epoch, logs, last)
            state = self.state_dict()  # the same for both checkpoints: the scheduler keeps its own
            if chosen:
                self.save("ckpt_best.pth", epoch, state)
            if settings.sched_on_epoch:
                self.scheduler.step(epoch)
            self.save("ckpt_latest.pth", epoch, state)
            LOGGER.info(epoch_line(epoch, settings.epochs, logs, self.history[-1]["lr"]))  # the epoch's lr
        return logs


def epoch_line(epoch: int, epochs: int, logs: Mapping[str, float], lr: float) -> str:
    """``epoch 3/10 loss 0.4120 val_oa 81.20 lr 1.00e-03 data wait 2.1%``: the log line of an epoch."""
    figures: List[str] = [f"{key} {value:.4f}" for key, value in logs.items() if key != "data_wait"]
    return (f"epoch {epoch}/{epochs} " + " ".join(figures) + f" lr {lr:.2e}"
            + (f" data wait {100 * logs['data_wait']:.1f}%" if "data_wait" in logs else ""))
