"""The base class of every mode: device, seed, run folder, and the model's input channels."""
import logging
import time
from typing import Any, Dict

import numpy as np
import torch

from ..io import restore_rng_state, rng_state_for_checkpoint
from . import builders
from .run_folder import RunFolder

LOGGER = logging.getLogger("plugin")


class Runner:
    """A mode of ``tools/main.py``; subclasses implement :meth:`run` and register in ``RUNNERS``.

    Args:
        cfg: the merged run config (see ``cfgs/default.yaml`` for the keys every runner reads).
        folder: the run folder to use; a new ``log/<task>/<exp>-<time>/`` by default.
    """

    def __init__(self, cfg: Dict[str, Any], folder: RunFolder = None):
        self.cfg = cfg
        builders.seed_everything(cfg.get("seed"))
        self.device = builders.select_device(cfg)
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
                                          for k, v in metrics.items()))
        return metrics


class EpochRunner(Runner):
    """A runner that trains for ``epochs`` and continues from its ``ckpt_latest.pth`` (``mode=resume``).

    Subclasses build ``self.model`` and ``self.optimizer``, call :meth:`restore` with a resumed
    checkpoint, and write checkpoints made by :meth:`checkpoint_state`. ``resume_mode`` names the
    mode that continues their checkpoints.
    """

    resume_mode = ""
    start_epoch = 1

    def checkpoint_state(self, epoch: int, **extra: Any) -> Dict[str, Any]:
        """Model, optimizer, epoch, RNG states, config and ``extra`` figures, after ``epoch`` finished."""
        return {"mode": self.resume_mode, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "epoch": epoch, "rng": rng_state_for_checkpoint(),
                "seconds": self.elapsed(),
                "cfg": self.cfg.dict(), **{key: _plain(value) for key, value in extra.items()}}

    def restore(self, state: Dict[str, Any]) -> None:
        """Continue from ``state``: weights, optimizer, RNG states, and the next epoch."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        restore_rng_state(state["rng"])
        self.start_epoch = state["epoch"] + 1
        self.seconds_before = float(state.get("seconds", 0.0))
        LOGGER.info(f"resumed after epoch {state['epoch']}")


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
