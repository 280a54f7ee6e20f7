"""``pretrain`` mode: train a pretext model (:class:`~plugin.models.base.PretextModel`) and export what it
pre-trained.

The engine calls only the contract of :mod:`plugin.models.base`: ``forward(batch) -> (loss, logs)``,
``param_groups()`` (Pic@Point's image-side heads train with ``lr_image``), ``export_state()`` and, for
checkpoint selection, ``validation_logits`` where ``supports_validation`` says so. A ``model.NAME``
that is not a pretext model is refused before training.

Checkpoints hold, besides the resumable state, the model's export and ``exports``, the key downstream
modes read: ``encoder`` (the encoder-only state dict, loadable into OpenPoints ``BaseCls.encoder``) with
``encoder_args`` for Pic@Point, the projection heads being dropped downstream; ``depth_encoder`` with
``clip`` for CLIP2Point.

``ckpt_best.pth`` selection (``pretrain.select``):

- ``loss``: the epoch with the lowest mean training loss (pre-training has no labels);
- ``zeroshot``: the epoch with the highest zero-shot top-1 accuracy on ``dataset.val``, for models
  with ``supports_validation`` (``validation_logits(batch, class_names) -> logits``). The validation objects are
  never the test objects: a ``dataset.val`` that reads the test partition is refused, and one that
  reads the train partition (``dataset.val.split: train``) holds out a seeded ``pretrain.holdout``
  share of the train objects, which pre-training then skips. They are scored as the test objects
  are, with the test-time transforms and fixed points: a validation dataset that augments (random
  view, rotation or point subset; ``RenderedViews`` does by default on the train partition) is
  refused until ``dataset.val.augment`` is False;
- ``auto`` (default): ``zeroshot`` when the model supports it and ``dataset.val`` is set, else ``loss``.
"""
import logging
from typing import Any, Dict, Optional, Tuple

import torch
from torch.utils.data import DataLoader, Subset

from ...errors import ConfigError
from ...eval import holdout_indices, topk_accuracy
from ...models.base import PretextModel
from .. import builders
from ..batch import check_points, prepare_batch
from ..data import base_dataset, build_dataloader, check_training_loader, loader_over, progress
from ..distributed import distributed_loader, wrap_model
from ..loop import Hook, Selection, TrainingLoop
from ..registry import RUNNERS
from ..run_folder import RunFolder
from ..runner import EpochRunner, count_parameters

LOGGER = logging.getLogger("plugin")
SELECTIONS = ("auto", "loss", "zeroshot")
VALIDATION_SEED = 0  # fixes the validation pass's data draws, so every epoch is scored on the same inputs


def build_pretext_model(cfg: Dict[str, Any]) -> PretextModel:
    """The model of ``cfg.model``, which must be a :class:`~plugin.models.base.PretextModel`."""
    model = builders.build_model(cfg)
    if not isinstance(model, PretextModel):
        raise ConfigError(f"mode=pretrain needs a pretext model, and model.NAME={cfg.model.NAME} is not one: set "
                          f"model.NAME to PicAtPoint or CLIP2Point, or make {type(model).__name__} subclass "
                          f"plugin.models.base.PretextModel.")
    return model


@RUNNERS.register_module(name="pretrain")
class PretrainRunner(EpochRunner):
    """Pre-train ``model`` (a registered pretext model) on ``dataset``'s train split.

    Args:
        cfg: the run config (``lr`` for the point branch, ``lr_image`` for image-side heads,
            ``pretrain.select``/``pretrain.holdout`` for the ``ckpt_best.pth`` selection).
        folder: the run folder (``resume`` passes the existing one).
        state: a checkpoint to continue from (``resume``).
    """

    resume_mode = "pretrain"
    distributed = True

    def __init__(self, cfg: Dict[str, Any], folder: RunFolder = None, state: Dict[str, Any] = None):
        super().__init__(cfg, folder)
        self.model = build_pretext_model(cfg).to(self.device)
        self.optimizer = builders.build_grouped_optimizer(cfg, self.model)
        self.scheduler = builders.build_scheduler(cfg, self.optimizer)
        self.selected_by = self._selection()
        self.lowest_loss = LowestLoss()
        if state is not None:
            self.restore(state)
            if "loop" not in state:  # written before the loop kept the hooks' states
                self.lowest_loss.load_state_dict({"loss": state["best_loss"]})
        self.net = wrap_model(self.model, self.dist, self.device, bool(cfg.get("sync_batchnorm")))
        LOGGER.info(f"model {cfg.model.NAME}: {count_parameters(self.model) / 1e6:.3f}M trainable parameters; "
                    f"ckpt_best.pth selected by {self.selected_by}")

    def _selection(self) -> str:
        """``loss`` or ``zeroshot``, from ``pretrain.select``, the model and ``dataset.val``."""
        wanted = (self.cfg.get("pretrain") or {}).get("select") or "auto"
        if wanted not in SELECTIONS:
            raise ConfigError(f"Unknown pretrain.select '{wanted}': set it to one of {', '.join(SELECTIONS)}.")
        capable = self.model.supports_validation
        has_val = bool(self.cfg.dataset.get("val"))
        if wanted == "auto":
            return "zeroshot" if capable and has_val else "loss"
        if wanted == "zeroshot" and not capable:
            raise ConfigError(f"Model {self.cfg.model.NAME} has no zero-shot validation: set pretrain.select=loss.")
        if wanted == "zeroshot" and not has_val:
            raise ConfigError("pretrain.select=zeroshot needs a validation split: set dataset.val (e.g. "
                              "{split: train} to hold out pretrain.holdout of the train objects).")
        return wanted

    def legacy_selection(self, state: Dict[str, Any]) -> Dict[str, Any]:
        best = state.get("best_val_top1", -1.0) if self.selected_by == "zeroshot" else state["best_loss"]
        return {"best": best, "best_epoch": state.get("best_epoch", 0)}

    def checkpoint_extra(self) -> Dict[str, Any]:
        return {**self.model.checkpoint_entries(), "selected_by": self.selected_by}

    def _batch(self, data: Dict[str, Any]) -> Dict[str, Any]:
        return prepare_batch(data, self.device, self.in_channels, feature_keys=self.cfg.get("feature_keys"))

    def loaders(self) -> Tuple[DataLoader, Optional[DataLoader]]:
        """The train loader and, for zero-shot selection, the validation loader (see the module docstring)."""
        train = build_dataloader(self.cfg, "train")
        if self.selected_by != "zeroshot":
            return train, None
        val = build_dataloader(self.cfg, "val", shuffle=False)
        partition, train_partition = getattr(val.dataset, "split", None), getattr(train.dataset, "split", None)
        if partition == "test":
            raise ConfigError(f"dataset.val reads the test objects of {self.cfg.dataset.common.NAME}, and checkpoints "
                              f"must not be selected on them: set dataset.val.split=train to validate on "
                              f"pretrain.holdout of the train objects, held out from pre-training.")
        self._check_fixed_transforms(val)
        if partition is not None and partition == train_partition:
            if len(val.dataset) != len(train.dataset):
                raise ConfigError(f"dataset.val lists {len(val.dataset)} objects but the train split "
                                  f"{len(train.dataset)}: give dataset.val the train split's data_dir.")
            share = float((self.cfg.get("pretrain") or {}).get("holdout") or 0.1)
            keep, held = holdout_indices(len(train.dataset), share, int(self.cfg.get("seed") or 0))
            LOGGER.info(f"zero-shot validation on {len(held)} train objects held out from pre-training "
                        f"({len(keep)} left)")
            return loader_over(train, keep, shuffle=True), loader_over(val, held, shuffle=False)
        LOGGER.info(f"zero-shot validation on the {len(val.dataset)} objects of dataset.val")
        return train, val

    @staticmethod
    def _check_fixed_transforms(val: DataLoader) -> None:
        """Refuse a validation dataset that augments: checkpoints are chosen under the test-time transforms."""
        if getattr(val.dataset, "augment", False):
            raise ConfigError("dataset.val applies the training augmentation (random view, rotation and point "
                              "subset), so zero-shot selection would not score the objects as the test does: set "
                              "dataset.val.augment=False.")

    @torch.no_grad()
    def validate(self, loader: DataLoader) -> float:
        """Zero-shot top-1 accuracy (%) of the model on ``loader``, with fixed data draws."""
        classes = list(getattr(base_dataset(loader.dataset), "classes", None) or [])
        if not classes:
            raise ConfigError("The validation dataset has no class names for the zero-shot prompts: list them as "
                              "'classes' in <data_dir>/meta.json (tools/render_views.py writes it), or set "
                              "pretrain.select=loss.")
        self.model.eval()
        logits, labels = [], []
        try:
            with builders.isolated_rng(VALIDATION_SEED):  # the training RNG stream is left as it was
                for data in progress(loader, "zero-shot val"):
                    pos = data["pos"].float().to(self.device)
                    check_points(pos, "validation batch")
                    logits.append(self.model.validation_logits({"pos": pos}, classes).cpu())
                    labels.append(data["y"].reshape(-1).long())
        finally:
            self.model.train()
        if not logits:
            raise ConfigError("The validation split is empty: set dataset.val to a split with objects.")
        return topk_accuracy(torch.cat(logits), torch.cat(labels), (1,))[1]

    def step(self, data: Dict[str, Any]) -> Tuple[torch.Tensor, Dict[str, float]]:
        """The pretext loss and figures of one batch."""
        return self.net(self._batch(data))

    def run(self) -> Dict[str, Any]:
        cfg = self.cfg
        loader, val_loader = self.loaders()
        check_training_loader(loader, "train split less the pretrain.holdout objects"
                                       if isinstance(loader.dataset, Subset) else "train split")
        if val_loader is None:
            selection, validate = Selection("loss", "min"), None
        else:
            selection = Selection("val_top1", "max")
            validate = lambda epoch: {"val_top1": self.validate(val_loader)}  # noqa: E731
        loop = self.make_loop(self.step, selection, validate, hooks=[self.lowest_loss], desc="pretrain",
                              model=self.net)
        means = loop.run(distributed_loader(loader, self.dist, shuffle=True, seed=int(cfg.get("seed") or 0)),
                         self.start_epoch)
        metrics = {"epochs": cfg.epochs, "best_loss": self.lowest_loss.loss, "selected_by": self.selected_by,
                   "best_epoch": selection.best_epoch}
        if self.selected_by == "zeroshot":
            metrics["best_val_top1"] = selection.best
        return self.finish({**metrics, **{f"last_{k}": v for k, v in means.items() if k != "data_wait"},
                            "encoder_checkpoint": self.folder.file("ckpt_best.pth")})


class LowestLoss(Hook):
    """The lowest mean training loss of any epoch so far (``metrics.json``'s ``best_loss``)."""

    name = "lowest_loss"

    def __init__(self):
        self.loss = float("inf")

    def after_epoch(self, loop: TrainingLoop, epoch: int, logs: Dict[str, float]) -> None:
        self.loss = min(self.loss, logs.get("loss", float("inf")))

    def state_dict(self) -> Dict[str, Any]:
        return {"loss": self.loss}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.loss = float(state["loss"])
