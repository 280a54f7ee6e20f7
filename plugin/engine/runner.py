"""The base class of every mode: device, seed, run folder, and the model's input channels."""
import logging
import os
import time
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import torch

from ..errors import ConfigError
from ..io import restore_rng_state, rng_state_for_checkpoint, save_json
from ..vis.training_curves import plot_training_curves
from . import builders
from .distributed import current, process_device
from .loop import Hook, LoopSettings, Selection, StepFn, TrainingLoop
from .run_folder import RunFolder

LOGGER = logging.getLogger("plugin")
CURVES_EVERY_S = 30.0  # curves.png is redrawn at most this often while a run trains, and at its last epoch


class Runner:
    """A mode of ``tools/main.py``; subclasses implement :meth:`run` and register in ``RUNNERS``.

    Args:
        cfg: the merged run config (see ``cfgs/default.yaml`` for the keys every runner reads).
        folder: the run folder to use; a new ``log/<task>/<exp>-<time>/`` by default.
    """

    distributed = False  # whether the mode trains in several processes under torchrun (DDP)

    def __init__(self, cfg: Dict[str, Any], folder: RunFolder = None):
        self.cfg = cfg
        self.dist = current()
        if self.dist.enabled and not self.distributed:
            raise ConfigError(f"mode={cfg.mode} runs in one process: start it with python tools/main.py, not torchrun "
                              f"(train, finetune and pretrain run under DDP).")
        # each rank draws its own augmentations; DDP gives every rank rank 0's initial weights
        builders.seed_everything(None if cfg.get("seed") is None else int(cfg.seed) + self.dist.rank)
        self.device = process_device(self.dist, builders.select_device(cfg))
        if folder is None:  # a new run; a resumed one keeps the cfg.yaml it was started with
            folder = RunFolder.create(cfg.root_dir, cfg.task, cfg.exp)
            folder.save_cfg(cfg)
        self.folder = folder
        self.started = time.time()
        self.seconds_before = 0.0  # wall time of the earlier segments of a resumed run
        LOGGER.info(f"mode={cfg.mode} task={cfg.task} exp={cfg.exp} device={self.device} "
                    f"run folder={self.folder.path}")

    @property
    def in_channels(self) -> int:
        """Input channels of the 3D encoder (``model.encoder_args.in_channels``, default 3)."""
        encoder_args = self.cfg.model.get("encoder_args") or {}
        return int(encoder_args.get("in_channels", 3))

    def run(self) -> Dict[str, Any]:
        """Do the work and return the final figures (also written to ``metrics.json``)."""
        raise NotImplementedError

    def elapsed(self) -> float:
        """Wall time of the run in seconds, over all its segments when it was resumed."""
        return self.seconds_before + time.time() - self.started

    def finish(self, metrics: Dict[str, Any]) -> Dict[str, Any]:
        """Add the run's wall time and folder, write ``metrics.json``, log the figures and free the folder."""
        metrics = dict(metrics, seconds=round(self.elapsed(), 2), run_dir=self.folder.path)
        self.folder.save_metrics(metrics)
        self.folder.release()
        LOGGER.info("final: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in metrics.items() if not isinstance(v, (list, dict))))
        return metrics


class EpochRunner(Runner):
    """A runner that trains for ``epochs`` with :class:`~plugin.engine.loop.TrainingLoop` and continues from its
    ``ckpt_latest.pth`` (``mode=resume``).

    Subclasses build ``self.model``, ``self.optimizer`` and ``self.scheduler``, call :meth:`restore` with a
    resumed checkpoint, and train with the loop of :meth:`make_loop`, whose checkpoints hold
    :meth:`checkpoint_state` plus :meth:`checkpoint_extra`. ``resume_mode`` names the mode that continues
    their checkpoints.
    """

    resume_mode = ""
    start_epoch = 1
    resumed: Optional[Dict[str, Any]] = None
    curves_drawn = -float("inf")  # time.monotonic() of the last curves.png

    def checkpoint_state(self, epoch: int, **extra: Any) -> Dict[str, Any]:
        """Model, optimizer, epoch, RNG states, config and ``extra`` entries, after ``epoch`` finished."""
        return {"mode": self.resume_mode, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "epoch": epoch, "rng": rng_state_for_checkpoint(),
                "seconds": self.elapsed(),
                "cfg": self.cfg.dict(), **{key: _plain(value) for key, value in extra.items()}}

    def checkpoint_extra(self) -> Dict[str, Any]:
        """Entries a mode adds to its checkpoints (its export, its split); none by default."""
        return {}

    def restore(self, state: Dict[str, Any]) -> None:
        """Continue from ``state``: weights, optimizer, RNG states, and the next epoch (the loop's state
        is given to the loop :meth:`make_loop` builds)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        restore_rng_state(state["rng"])
        self.start_epoch = state["epoch"] + 1
        if self.dist.rank and self.cfg.get("seed") is not None:  # the checkpoint holds rank 0's RNG states
            builders.seed_everything(int(self.cfg.seed) + self.dist.rank + 7919 * self.start_epoch)
        self.seconds_before = float(state.get("seconds", 0.0))
        self.resumed = state
        LOGGER.info(f"resumed after epoch {state['epoch']}")

    def legacy_selection(self, state: Dict[str, Any]) -> Dict[str, Any]:
        """The selection state of a checkpoint written before the loop stored its own (``best``, ``best_epoch``)."""
        return {"best": state.get("best", float("nan")), "best_epoch": state.get("best_epoch", 0)}

    def make_loop(self, step: StepFn, selection: Selection,
                  validate: Optional[Callable[[int], Dict[str, float]]] = None, hooks: Sequence[Hook] = (),
                  desc: str = "epoch", model: Optional[torch.nn.Module] = None) -> TrainingLoop:
        """The training loop of this run, with the resumed checkpoint's loop state.

        Args:
            step: ``step(batch) -> (loss, logs)``.
            selection: the ``ckpt_best.pth`` rule.
            validate: ``validate(epoch) -> figures`` (None: no validation).
            hooks: behaviour added to the loop.
            desc: the progress bar's label.
            model: what ``step`` runs, if not ``self.model`` (its parameters are clipped).
        """
        loop = TrainingLoop(self.model if model is None else model, self.optimizer, self.scheduler,
                            LoopSettings.from_cfg(self.cfg), self.device, step, self._save, selection, validate,
                            hooks, desc)
        if self.resumed is not None:
            loop.load_state_dict(self.resumed.get("loop") or {"selection": self.legacy_selection(self.resumed)})
        if loop.amp_dtype is not None:
            LOGGER.info(f"mixed precision: {loop.amp_dtype} autocast on {self.device.type}")
        return loop

    def draw_curves(self, history: Sequence[Dict[str, Any]], title: str) -> None:
        """Draw the run's figure of ``history`` (every epoch's figures): ``curves.png`` by default."""
        plot_training_curves(history, self.folder.file("curves.png"), title=title, config_key=self.folder.config_key)

    def _save(self, name: str, epoch: int, loop_state: Dict[str, Any]) -> None:
        """Write checkpoint ``name``. With ``ckpt_latest.pth``, first ``history.json`` (every epoch's figures) and, at
        the last epoch or when the last drawing is :data:`CURVES_EVERY_S` old, ``curves.png`` (drawing takes about
        0.3 s, more than a whole epoch of the adapters on cached features), so the checkpoint's wall time includes them.
        """
        if name == "ckpt_latest.pth" and self.folder.writer:
            save_json(loop_state["history"], self.folder.file("history.json"), self.folder.config_key)
            if epoch == int(self.cfg.epochs) or time.monotonic() - self.curves_drawn >= CURVES_EVERY_S:
                self.curves_drawn = time.monotonic()
                self.draw_curves(loop_state["history"], f"{self.cfg.task}/{os.path.basename(self.folder.path)}")
        self.folder.save_checkpoint(self.checkpoint_state(epoch, loop=loop_state, **self.checkpoint_extra()), name)


def _plain(value: Any) -> Any:
    """``value`` with NumPy scalars made Python numbers (a checkpoint holds only what ``weights_only`` loads)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    return value


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
