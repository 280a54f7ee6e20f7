"""``pretrain`` mode: train a pretext model that returns ``(loss, logs)`` and export its encoder.

Checkpoints hold, besides the resumable state, ``encoder`` (the encoder-only state dict, loadable
into OpenPoints ``BaseCls.encoder``) and ``encoder_args``; the projection heads are dropped
downstream. ``ckpt_best.pth`` follows the lowest mean training loss (pre-training has no labels).
"""
import logging
from collections import defaultdict
from typing import Any, Dict

import torch

from ..errors import BadInputError
from . import builders
from .batch import prepare_batch
from .classification import progress
from .registry import RUNNERS
from .run_folder import RunFolder
from .runner import EpochRunner, count_parameters

LOGGER = logging.getLogger("plugin")


def build_pretext_optimizer(cfg: Dict[str, Any], model: torch.nn.Module) -> torch.optim.Optimizer:
    """OpenPoints' optimizer for ``cfg.optimizer``, regrouped so image-side parameters use ``lr_image``.

    OpenPoints' factory resolves the optimizer class and its defaults from ``optimizer.NAME``; the
    frozen 2D backbone has no trainable parameters and is left out.
    """
    base = builders.build_optimizer(cfg, model)
    image_side = {id(p) for p in getattr(model, "image_side_parameters", list)()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if id(p) not in image_side]}]
    if image_side:
        groups.append({"params": [p for p in trainable if id(p) in image_side],
                       "lr": cfg.get("lr_image") or cfg.lr})
    return type(base)(groups, **base.defaults)


@RUNNERS.register_module(name="pretrain")
class PretrainRunner(EpochRunner):
    """Pre-train ``model`` (a registered pretext model) on ``dataset``'s train split.

    Args:
        cfg: the run config (``lr`` for the point branch, ``lr_image`` for image-side heads).
        folder: the run folder (``resume`` passes the existing one).
        state: a checkpoint to continue from (``resume``).
    """

    resume_mode = "pretrain"

    def __init__(self, cfg: Dict[str, Any], folder: RunFolder = None, state: Dict[str, Any] = None):
        super().__init__(cfg, folder)
        self.model = builders.build_model(cfg).to(self.device)
        self.optimizer = build_pretext_optimizer(cfg, self.model)
        self.scheduler = builders.build_scheduler(cfg, self.optimizer)
        self.best_loss = float("inf")
        if state is not None:
            self.restore(state)
            self.best_loss = state["best_loss"]
        LOGGER.info(f"model {cfg.model.NAME}: {count_parameters(self.model) / 1e6:.3f}M trainable parameters")

    def _state(self, epoch: int) -> Dict[str, Any]:
        return self.checkpoint_state(epoch, encoder=self.model.encoder.state_dict(),
                                     encoder_args=dict(self.cfg.model.encoder_args), best_loss=self.best_loss)

    def _batch(self, data: Dict[str, Any]) -> Dict[str, Any]:
        return prepare_batch(data, self.device, self.in_channels, feature_keys=self.cfg.get("feature_keys"))

    def train_epoch(self, loader, epoch: int) -> Dict[str, float]:
        """One pass over ``loader``; returns the mean of every logged figure."""
        self.model.train()
        sums, clip = defaultdict(float), self.cfg.get("grad_norm_clip")
        bar = progress(loader, f"pretrain {epoch}/{self.cfg.epochs}")
        for step, data in enumerate(bar, 1):
            loss, logs = self.model(self._batch(data))
            if not torch.isfinite(loss):
                raise BadInputError(f"The pre-training loss became {loss.item()} at epoch {epoch}: lower lr, "
                                    f"set grad_norm_clip, or check the data for outliers.")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.optimizer.step()
            for key, value in logs.items():
                sums[key] += value
            bar.set_postfix({k: f"{v / step:.3f}" for k, v in sums.items() if k.startswith("loss")})
        return {k: v / max(len(loader), 1) for k, v in sums.items()}

    def run(self) -> Dict[str, Any]:
        cfg = self.cfg
        loader = builders.build_dataloader(cfg, "train")
        self.scheduler.step(self.start_epoch - 1)
        means: Dict[str, float] = {}
        for epoch in range(self.start_epoch, cfg.epochs + 1):
            means = self.train_epoch(loader, epoch)
            if means.get("loss", float("inf")) < self.best_loss:
                self.best_loss = means["loss"]
                self.folder.save_checkpoint(self._state(epoch), "ckpt_best.pth")
            self.scheduler.step(epoch)
            self.folder.save_checkpoint(self._state(epoch), "ckpt_latest.pth")
            LOGGER.info(f"epoch {epoch}/{cfg.epochs} " + " ".join(f"{k} {v:.4f}" for k, v in means.items()))
        return self.finish({"epochs": cfg.epochs, "best_loss": self.best_loss,
                            **{f"last_{k}": v for k, v in means.items()},
                            "encoder_checkpoint": self.folder.file("ckpt_best.pth")})
