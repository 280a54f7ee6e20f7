"""``train`` mode: supervised classification (OpenPoints ``BaseCls``)."""
import logging
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch.utils.data import DataLoader

from ...errors import ConfigError
from ...eval import holdout_indices
from ...models.ema import build_ema
from .. import builders
from ..batch import prepare_batch
from ..data import build_dataloader, check_training_loader, loader_over, probe_loader
from ..distributed import barrier, broadcast_buffers, distributed_loader, wrap_model
from ..evaluation import evaluate
from ..hooks import EmaHook
from ..loop import Selection
from ..registry import RUNNERS
from ..run_folder import RunFolder, load_checkpoint
from ..runner import EpochRunner, count_parameters

LOGGER = logging.getLogger("plugin")
SELECTIONS = ("holdout", "last")  # train.select: how ckpt_best.pth is chosen (never on the test split)


def train_selection(cfg: Dict[str, Any]) -> Tuple[str, float]:
    """``train.select`` and ``train.holdout`` of a run config; configs of older runs, without the block,
    report the last epoch."""
    block = cfg.get("train") or {}
    selection = str(block.get("select") or "last")
    if selection not in SELECTIONS:
        raise ConfigError(f"Unknown train.select '{selection}': set it to {' or '.join(SELECTIONS)} (the test split "
                          f"never chooses the checkpoint).")
    return selection, float(block.get("holdout") or 0.1)


@RUNNERS.register_module(name="train")
class TrainRunner(EpochRunner):
    """Train ``model`` on ``dataset`` with OpenPoints' optimizer, scheduler and loss.

    Every epoch writes ``ckpt_latest.pth``. ``ckpt_best.pth`` is chosen without the test split
    (``train.select``): ``holdout`` holds out a seeded ``train.holdout`` share of the train split (read
    with the test-time transforms) and keeps the epoch with the best OA on it, scored every ``val_freq``
    epochs and at the last; ``last`` keeps the last epoch. At the end that checkpoint is evaluated on the
    test split, once, and the figures go to ``metrics.json`` with ``selected_by``.

    Args:
        cfg: the run config.
        folder: the run folder (``resume`` passes the existing one).
        state: a checkpoint to continue from (``resume``).
    """

    resume_mode = "train"
    distributed = True

    def __init__(self, cfg: Dict[str, Any], folder: RunFolder = None, state: Dict[str, Any] = None):
        self.selected_by, self.holdout_share = train_selection(cfg)  # a wrong key fails before the folder exists
        super().__init__(cfg, folder)
        self.model = builders.build_model(cfg).to(self.device)
        self.criterion = builders.build_criterion(cfg).to(self.device)
        self.optimizer = builders.build_optimizer(cfg, self.model)
        self.scheduler = builders.build_scheduler(cfg, self.optimizer)
        if state is not None:
            self.restore(state)
        self.ema = build_ema(cfg.get("ema"), self.model)  # a resumed run's average comes from its checkpoint
        self.net = wrap_model(self.model, self.dist, self.device, bool(cfg.get("sync_batchnorm")))
        LOGGER.info(f"model {cfg.model.NAME}: {count_parameters(self.model) / 1e6:.3f}M parameters; "
                    f"ckpt_best.pth selected by {self.selected_by}")

    def legacy_selection(self, state: Dict[str, Any]) -> Dict[str, Any]:
        return {"best": state.get("best_oa", -1.0), "best_epoch": state.get("best_epoch", 0)}

    def checkpoint_extra(self) -> Dict[str, Any]:
        return {"selected_by": self.selected_by}

    def _eval_args(self) -> Dict[str, Any]:
        return dict(device=self.device, in_channels=self.in_channels, num_points=self.cfg.get("num_points"),
                    feature_keys=self.cfg.get("feature_keys"), num_classes=self.cfg.num_classes)

    def loaders(self) -> Tuple[DataLoader, Optional[DataLoader], List[int]]:
        """The training loader, the held-out validation loader (None for ``last``) and the held-out indices."""
        train, seed = build_dataloader(self.cfg, "train"), int(self.cfg.get("seed") or 0)
        if self.selected_by == "last":
            return distributed_loader(train, self.dist, shuffle=True, seed=seed), None, []
        keep, held = holdout_indices(len(train.dataset), self.holdout_share, seed, key="train.holdout")
        LOGGER.info(f"checkpoint selection on {len(held)} train samples held out from training ({len(keep)} left)")
        val = loader_over(probe_loader(self.cfg, "train"), held)
        return (distributed_loader(loader_over(train, keep, shuffle=True), self.dist, shuffle=True, seed=seed),
                distributed_loader(val, self.dist, shuffle=False, seed=seed), held)

    def step(self, data: Dict[str, Any]) -> Tuple[torch.Tensor, Dict[str, float]]:
        """The classification loss of one batch."""
        data = prepare_batch(data, self.device, self.in_channels, self.cfg.get("num_points"),
                             self.cfg.get("feature_keys"))
        return self.criterion(self.net(data), data["y"]), {}

    def run(self) -> Dict[str, Any]:
        cfg = self.cfg
        train_loader, val_loader, held = self.loaders()
        check_training_loader(train_loader, "train split less the train.holdout samples" if held else "train split")

        def validate(epoch: int) -> Dict[str, float]:
            broadcast_buffers(self.model)  # every rank scores its share with rank 0's BatchNorm statistics
            val = evaluate(self.model, val_loader, desc="holdout", **self._eval_args())
            return {"val_oa": val["oa"], "val_macc": val["macc"]}

        selection = Selection("val_oa", "max") if val_loader is not None else Selection(None)
        ema = [EmaHook(self.ema)] if self.ema is not None else []
        loop = self.make_loop(self.step, selection, validate if val_loader is not None else None, hooks=ema,
                              model=self.net)
        loop.run(train_loader, self.start_epoch)
        barrier()  # rank 0 wrote the checkpoints
        best = load_checkpoint(self.folder.file("ckpt_best.pth"))
        self.model.load_state_dict(best["model"])
        test_loader = distributed_loader(build_dataloader(cfg, "test"), self.dist, shuffle=False,
                                         seed=int(cfg.get("seed") or 0))
        test = evaluate(self.model, test_loader, desc="test", **self._eval_args())
        metrics = {"epochs": cfg.epochs, "selected_by": self.selected_by, "best_epoch": loop.selection.best_epoch,
                   "best_val_oa": loop.selection.best if val_loader is not None else None,
                   "holdout_samples": len(held), "test_oa": test["oa"], "test_macc": test["macc"],
                   "params_m": count_parameters(self.model) / 1e6, "processes": self.dist.world_size}
        if self.ema is not None:  # the average of the selected checkpoint, scored as well
            self.ema.load_state_dict(best["loop"]["hooks"]["ema"])
            ema_test = evaluate(self.ema.module, test_loader, desc="test (EMA)", **self._eval_args())
            metrics.update(ema_test_oa=ema_test["oa"], ema_test_macc=ema_test["macc"])
        return self.finish(metrics)
