"""``train`` mode: supervised classification (OpenPoints ``BaseCls``)."""
import logging
from typing import Any, Dict

import numpy as np
import torch

from ...errors import BadInputError
from .. import builders
from ..batch import prepare_batch
from ..data import build_dataloader, check_training_loader, progress
from ..evaluation import evaluate
from ..registry import RUNNERS
from ..run_folder import RunFolder, load_checkpoint
from ..runner import EpochRunner, count_parameters

LOGGER = logging.getLogger("plugin")


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
