"""Supervised classification modes: ``train``, ``test`` and ``resume`` (OpenPoints ``BaseCls``)."""
import logging
import os
from typing import Any, Dict, Optional

import numpy as np
import torch
from openpoints.utils import EasyConfig

from ..errors import BadInputError, ConfigError
from ..eval import accuracy
from . import builders
from .batch import prepare_batch
from .data import build_dataloader, check_training_loader, progress
from .registry import RUNNERS
from .run_folder import CHECKPOINTS, RunFolder, load_checkpoint
from .runner import EpochRunner, Runner, count_parameters

LOGGER = logging.getLogger("plugin")


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, device: torch.device, in_channels: int,
             num_points: Optional[int], feature_keys: Optional[str], num_classes: int,
             desc: str = "eval") -> Dict[str, float]:
    """Overall accuracy (``oa``) and mean class accuracy (``macc``) in percent on ``loader``."""
    model.eval()
    predicted, labels = [], []
    for data in progress(loader, desc):
        data = prepare_batch(data, device, in_channels, num_points, feature_keys)
        predicted.append(model(data).argmax(dim=1).cpu().numpy().reshape(-1))
        labels.append(data["y"].cpu().numpy().reshape(-1))
    return accuracy(np.concatenate(predicted), np.concatenate(labels), num_classes)


@RUNNERS.register_module(name="train")
class TrainRunner(EpochRunner):
    """Train ``model`` on ``dataset`` with OpenPoints' optimizer, scheduler and loss.

    Every epoch writes ``ckpt_latest.pth``; every ``val_freq`` epochs (and the last) the model is
    validated and ``ckpt_best.pth`` follows the best validation OA. At the end the best checkpoint
    is evaluated on the test split and the figures go to ``metrics.json``.

    Args:
        cfg: the run config.
        folder: the run folder (``resume`` passes the existing one).
        state: a checkpoint to continue from (``resume``).
    """

    resume_mode = "train"

    def __init__(self, cfg: Dict[str, Any], folder: RunFolder = None, state: Dict[str, Any] = None):
        super().__init__(cfg, folder)
        self.model = builders.build_model(cfg).to(self.device)
        self.criterion = builders.build_criterion(cfg).to(self.device)
        self.optimizer = builders.build_optimizer(cfg, self.model)
        self.scheduler = builders.build_scheduler(cfg, self.optimizer)
        self.best_oa, self.best_epoch = -1.0, 0
        if state is not None:
            self.restore(state)
            self.best_oa, self.best_epoch = state["best_oa"], state["best_epoch"]
        LOGGER.info(f"model {cfg.model.NAME}: {count_parameters(self.model) / 1e6:.3f}M parameters")

    def _state(self, epoch: int) -> Dict[str, Any]:
        return self.checkpoint_state(epoch, best_oa=self.best_oa, best_epoch=self.best_epoch)

    def _loader(self, split: str):
        return build_dataloader(self.cfg, split)

    def _eval_args(self) -> Dict[str, Any]:
        return dict(device=self.device, in_channels=self.in_channels, num_points=self.cfg.get("num_points"),
                    feature_keys=self.cfg.get("feature_keys"), num_classes=self.cfg.num_classes)

    def train_epoch(self, loader, epoch: int) -> float:
        """One pass over ``loader``; returns the mean loss."""
        self.model.train()
        losses, clip = [], self.cfg.get("grad_norm_clip")
        bar = progress(loader, f"epoch {epoch}/{self.cfg.epochs}")
        for data in bar:
            data = prepare_batch(data, self.device, self.in_channels, self.cfg.get("num_points"),
                                 self.cfg.get("feature_keys"))
            loss = self.criterion(self.model(data), data["y"])
            if not torch.isfinite(loss):
                raise BadInputError(f"The training loss became {loss.item()} at epoch {epoch}: lower lr, "
                                    f"set grad_norm_clip, or check the data for outliers.")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses):.4f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")
        return float(np.mean(losses)) if losses else float("nan")

    def run(self) -> Dict[str, Any]:
        cfg = self.cfg
        train_loader = self._loader("train")
        check_training_loader(train_loader)
        val_loader = self._loader("val")
        self.scheduler.step(self.start_epoch - 1)
        for epoch in range(self.start_epoch, cfg.epochs + 1):
            loss = self.train_epoch(train_loader, epoch)
            message = f"epoch {epoch}/{cfg.epochs} loss {loss:.4f} lr {self.optimizer.param_groups[0]['lr']:.2e}"
            if epoch % cfg.val_freq == 0 or epoch == cfg.epochs:
                val = evaluate(self.model, val_loader, desc="val", **self._eval_args())
                message += f" val OA {val['oa']:.2f} mAcc {val['macc']:.2f}"
                if val["oa"] > self.best_oa:
                    self.best_oa, self.best_epoch = val["oa"], epoch
                    self.folder.save_checkpoint(self._state(epoch), "ckpt_best.pth")
            self.scheduler.step(epoch)
            self.folder.save_checkpoint(self._state(epoch), "ckpt_latest.pth")
            LOGGER.info(message)
        best = load_checkpoint(self.folder.file("ckpt_best.pth"))
        self.model.load_state_dict(best["model"])
        test = evaluate(self.model, self._loader("test"), desc="test", **self._eval_args())
        return self.finish({"epochs": cfg.epochs, "best_epoch": self.best_epoch, "best_val_oa": self.best_oa,
                            "test_oa": test["oa"], "test_macc": test["macc"],
                            "params_m": count_parameters(self.model) / 1e6})


RESUME_KEYS = ("mode", "run_dir", "epochs", "root_dir", "task", "exp", "load_path")  # select or extend, nothing else


@RUNNERS.register_module(name="resume")
class ResumeRunner:
    """Continue a killed or finished run in its own folder, with the config it was started with.

    The run is ``run_dir`` if set, else the folder of ``load_path`` if set, else the newest run of
    exactly the same task and experiment under ``root_dir``. It continues from its newest readable
    checkpoint, whose ``mode`` (``train``, ``pretrain``, ...) picks the runner and whose stored config
    is the run's config: the experiment file is not re-read, ``cfg.yaml`` is not rewritten, and the
    only change accepted is ``epochs=N`` (to extend a finished run); any other override is refused.
    A run that another live process is writing is refused too (see :class:`RunFolder`).

    Args:
        cfg: the command's config (only ``RESUME_KEYS`` are read from it).
    """

    def __init__(self, cfg: Dict[str, Any]):
        run_dir = cfg.get("run_dir") or (os.path.dirname(cfg.load_path) if cfg.get("load_path") else None)
        run_dir = run_dir or RunFolder.latest(cfg.root_dir, cfg.task, cfg.exp)
        if not run_dir or not any(os.path.isfile(os.path.join(run_dir, name)) for name in CHECKPOINTS):
            raise ConfigError(f"No run to resume for {cfg.task}/{cfg.exp} (looked in "
                              f"{run_dir or os.path.join(cfg.root_dir, cfg.task)}): set run_dir to a run folder "
                              f"holding ckpt_latest.pth, or start one with mode=train.")
        changes = [o for o in cfg.get("overrides") or [] if o.lstrip("-+").split("=", 1)[0] not in RESUME_KEYS]
        if changes:
            raise ConfigError(f"mode=resume continues a run with the config it was started with, so '{changes[0]}' "
                              f"cannot be applied: drop it (resume accepts only epochs=N to extend the run and "
                              f"run_dir=... to pick one), or start a new run with it.")
        folder = RunFolder(run_dir)  # takes the run's lock: a live writer is refused here
        path, state = folder.newest_checkpoint()
        if state is None or not isinstance(state.get("cfg"), dict):
            folder.release()
            raise ConfigError(f"No readable checkpoint with its run config in {run_dir}: set run_dir to another "
                              f"run folder, or start a new run.")
        folder.sweep_partial_writes()
        run_cfg = EasyConfig()
        run_cfg.update(_plain_config(state["cfg"]))
        extended = any(o.lstrip("-+").startswith("epochs=") for o in cfg.get("overrides") or [])
        if extended:
            run_cfg.epochs = cfg.epochs
        LOGGER.info(f"resume: {os.path.basename(path)} after epoch {state['epoch']} of {run_dir}"
                    + (f", extended to {run_cfg.epochs} epochs" if extended else ""))
        self.runner = RUNNERS.get(state.get("mode") or "train")(run_cfg, folder, state)

    def run(self) -> Dict[str, Any]:
        return self.runner.run()


def _plain_config(node: Any) -> Any:
    """A stored config without the objects older runs left in it (OpenPoints wrote built transforms there)."""
    if isinstance(node, dict):
        return {key: _plain_config(value) for key, value in node.items()
                if value is None or isinstance(value, (bool, int, float, str, list, tuple, dict))}
    if isinstance(node, (list, tuple)):
        return [_plain_config(item) for item in node]
    return node


@RUNNERS.register_module(name="test")
class TestRunner(Runner):
    """Evaluate a trained checkpoint (``load_path``, else the newest run's ``ckpt_best.pth``) on the test split."""

    def run(self) -> Dict[str, Any]:
        cfg = self.cfg
        path = cfg.get("load_path")
        if not path:
            latest = RunFolder.latest(cfg.root_dir, cfg.task, cfg.exp)
            if latest is None:
                raise ConfigError(f"No trained run of {cfg.task}/{cfg.exp} in {os.path.join(cfg.root_dir, cfg.task)}: "
                                  f"set load_path to a ckpt_best.pth, or train one first with mode=train.")
            path = os.path.join(latest, "ckpt_best.pth")
        state = load_checkpoint(path)
        model = builders.build_model(cfg).to(self.device)
        model.load_state_dict(state["model"])
        test = evaluate(model, build_dataloader(cfg, "test"), self.device, self.in_channels,
                        cfg.get("num_points"), cfg.get("feature_keys"), cfg.num_classes, desc="test")
        return self.finish({"checkpoint": path, "test_oa": test["oa"], "test_macc": test["macc"]})
