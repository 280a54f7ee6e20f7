"""``selftrain`` mode: Cross-MoST's cross-modal self-training of a :class:`~plugin.models.CrossMoST` student with an
EMA teacher, on unlabelled image-point pairs (``CrossModalPairs``, ``DepthPairs``).

Before training, the point branch loads the alignment export of ``pretrained_path`` (``model.init: aligned``) and the
classifier Q is set from CLIP text embeddings (``model.classifier_init: text``) or, where no CLIP exists, from the
class means of ``selftrain.shots`` labelled train examples per class (``examples``, the CPU measurement's weak start;
``metrics.json`` then says how many labels it read). The teacher is the run's ``ema`` block (timm ``ModelEmaV3``,
momentum ramped 0.99 -> 0.9998 over the first 400 updates in the configs), updated after every optimizer step.

Training reads labels only to log pseudo-label accuracy. The test split is evaluated, never selected on: at epoch 0
(the zero-shot start, the run's first row) and every ``val_freq`` epochs, top-1 of Q for Image (view 0), Image*
(embeddings averaged over the views) and Point cloud, with prediction entropy and bias, for the student and the
teacher; ``metrics.json`` holds them per epoch under ``curves``, with each epoch's pseudo-label figures.
``ckpt_best.pth`` is chosen by ``selftrain.select``: ``last`` (default), ``confidence`` (highest mean confidence of
the kept pseudo-labels) or ``agreement`` (highest teacher image-point agreement), both unsupervised.
``<run>/self_training.png`` draws the curves (also ``python tools/visualize.py selftrain --run <run>``).
"""
import copy
import logging
from typing import Any, Dict, List, Sequence

import numpy as np
import torch

from ...errors import ConfigError
from ...losses.self_training import kl_from_uniform, prediction_bias
from ...models.ema import build_ema
from ...models.pretext.cross_most import CrossMoST
from ...vis.self_training_curves import plot_self_training
from .. import builders
from ..batch import batch_to
from ..config import optional_path
from ..data import build_dataloader, check_training_loader, class_names_of, loader_over, progress
from ..distributed import distributed_loader, wrap_model
from ..hooks import EmaHook
from ..loop import Selection
from ..registry import RUNNERS
from ..run_folder import load_checkpoint
from ..runner import EpochRunner, count_parameters

LOGGER = logging.getLogger("plugin")
SELECTIONS = {"last": None, "confidence": "pl_conf", "agreement": "pl_agree"}
BRANCHES = ("image", "image_star", "point")
VALIDATION_SEED = 0


@RUNNERS.register_module(name="selftrain")
class SelfTrainRunner(EpochRunner):
    """Self-train a CrossMoST student on ``dataset``'s train split; evaluate on its test split.

    Args:
        cfg: the run config (``model``, ``pretrained_path``, ``ema``, ``selftrain``: ``select``, ``base_lr``,
            ``lr_batch``, ``shots``).
        folder: the run folder (``resume`` passes the existing one).
        state: a checkpoint to continue from (``resume``).
    """

    resume_mode = "selftrain"
    distributed = True

    def __init__(self, cfg: Dict[str, Any], folder=None, state: Dict[str, Any] = None):
        super().__init__(cfg, folder)
        self.options = dict(cfg.get("selftrain") or {})
        if self.options.get("select", "last") not in SELECTIONS:
            raise ConfigError(f"selftrain.select is {self.options.get('select')!r}: set it to one of "
                              f"{', '.join(SELECTIONS)} (never the test accuracy).")
        self.train_loader = build_dataloader(cfg, "train")
        self.test_loader = build_dataloader(cfg, "test", batch_size=cfg.get("val_batch_size"), shuffle=False)
        if cfg.model.get("class_names") is None:
            cfg.model.class_names = class_names_of(self.train_loader.dataset)
        if self.options.get("base_lr"):                    # lr = base_lr x global batch / lr_batch (2e-5 x B / 256)
            cfg.lr = float(self.options["base_lr"]) * cfg.batch_size * self.dist.world_size / \
                float(self.options.get("lr_batch") or 256)
        model = builders.build_model(cfg)
        if not isinstance(model, CrossMoST):
            raise ConfigError(f"mode=selftrain trains a CrossMoST student, and model.NAME={cfg.model.NAME} is not one: "
                              f"set model.NAME=CrossMoST.")
        self.model = model.to(self.device)
        self.optimizer = builders.build_grouped_optimizer(cfg, self.model)
        self.scheduler = builders.build_scheduler(cfg, self.optimizer)
        self.labels_read = 0
        if state is not None:
            self.restore(state)
            self.labels_read = int(state.get("labels_read", 0))
        else:
            self._initialise()
        if not cfg.get("ema"):
            raise ConfigError("mode=selftrain needs the EMA teacher: set ema.momentum, e.g. {start: 0.99, end: 0.9998, "
                              "ramp_steps: 400, shape: linear}.")
        self.net = wrap_model(self.model, self.dist, self.device, bool(cfg.get("sync_batchnorm")))
        # after the wrap: DDP gives every rank rank 0's weights, so every rank's teacher starts from them
        self.ema = build_ema(cfg.get("ema"), self.model)
        if self.ema is None:
            raise ConfigError("mode=selftrain needs the EMA teacher: set ema.enabled=True.")
        LOGGER.info(f"Cross-MoST: {count_parameters(self.model) / 1e6:.3f}M trainable parameters, lr {cfg.lr:.3e}, "
                    f"pseudo-labels {self.model.source}, {len(self.model.class_names)} classes")

    # ---- initialisation ----

    def _initialise(self) -> None:
        """The aligned point branch and, for ``classifier_init: examples``, Q from labelled examples."""
        path = optional_path(self.cfg)
        if self.model.init == "aligned":
            if not path:
                raise ConfigError("model.init=aligned needs pretrained_path: set it to the ckpt_best.pth of a "
                                  "CLIPAlign alignment run, or set model.init=random.")
            self.model.load_alignment(load_checkpoint(path, "pretrained_path"), path)
        elif path:
            LOGGER.warning(f"model.init=random: pretrained_path {path} is not loaded")
        if self.model.classifier_init == "examples":
            self.model.init_classifier(self._example_classifier())

    def _example_classifier(self) -> torch.Tensor:
        """(C, D) class means of ``selftrain.shots`` train examples per class (seeded draw, view 0, fixed points)."""
        shots = int(self.options.get("shots") or 1)
        cfg = copy.deepcopy(self.cfg)
        cfg.dataset.train.augment = False
        loader = build_dataloader(cfg, "train", batch_size=cfg.get("val_batch_size"), shuffle=False)
        labels = np.asarray(loader.dataset.labels)
        order = np.random.RandomState(int(self.cfg.get("seed") or 0)).permutation(len(labels))
        classes = len(self.model.class_names)
        chosen: List[int] = []
        for c in range(classes):
            members = [int(i) for i in order if labels[i] == c][:shots]
            if not members:
                raise ConfigError(f"The train split has no example of class {c} ({self.model.class_names[c]}) for "
                                  f"model.classifier_init=examples: use classifier_init=text or data with every class.")
            chosen += members
        sums = torch.zeros(classes, self.model.dim)
        self.model.eval()
        for batch in loader_over(loader, chosen):
            emb = self.model.example_embeddings(batch_to(batch, self.device)).cpu()
            sums.index_add_(0, batch["y"].view(-1).long(), emb)
        self.model.train()
        self.labels_read = len(chosen)
        LOGGER.info(f"classifier Q: class means of {shots} labelled train example(s) per class ({len(chosen)} labels)")
        return sums / shots

    def checkpoint_extra(self) -> Dict[str, Any]:
        return {**self.model.checkpoint_entries(), "labels_read": self.labels_read}

    # ---- evaluation ----

    @torch.no_grad()
    def evaluate(self) -> Dict[str, float]:
        """Top-1 (%), entropy and bias of Q per branch, student and teacher, on the test split (labels read here);
        one pass over the split feeds both models."""
        models = {"student": self.model, "teacher": self.ema.module}
        was = {who: model.training for who, model in models.items()}
        logits: Dict[str, Dict[str, List[torch.Tensor]]] = {who: {} for who in models}
        labels = []
        with builders.isolated_rng(VALIDATION_SEED):
            for model in models.values():
                model.eval()
            for batch in progress(self.test_loader, "evaluate"):
                batch = batch_to(batch, self.device)
                for who, model in models.items():
                    for branch, value in model.predict(batch).items():
                        logits[who].setdefault(branch, []).append(value.float().cpu())
                labels.append(batch["y"].view(-1).long().cpu())
            for who, model in models.items():
                model.train(was[who])
        y = torch.cat(labels)
        figures: Dict[str, float] = {}
        for who in models:
            for branch in BRANCHES:
                if branch in logits[who]:
                    values = torch.cat(logits[who][branch])
                    prob = values.softmax(dim=1)
                    figures[f"{who}_{branch}_top1"] = 100.0 * float((values.argmax(1) == y).float().mean())
                    figures[f"{who}_{branch}_entropy"] = float(kl_from_uniform(prob))
                    figures[f"{who}_{branch}_bias"] = float(prediction_bias(prob))
        return figures

    def draw_curves(self, history: Sequence[Dict[str, Any]], title: str) -> None:
        """``self_training.png``: the curves of the paper's Figs. 3-4 (instead of the generic ``curves.png``)."""
        plot_self_training(history, self.folder.file("self_training.png"), title=f"{title}: Cross-MoST "
                           f"({self.model.source})", config_key=self.folder.config_key)

    # ---- training ----

    def step(self, batch: Dict[str, Any]):
        return self.net(batch_to(batch, self.device), teacher=self.ema.module)

    def run(self) -> Dict[str, Any]:
        cfg = self.cfg
        check_training_loader(self.train_loader)
        select = self.options.get("select", "last")
        key = SELECTIONS[select]
        selection = Selection(key, "max")
        loop = self.make_loop(self.step, selection, lambda epoch: self.evaluate(), hooks=[EmaHook(self.ema)],
                              desc="selftrain", model=self.net)
        if not loop.history:                             # epoch 0: the start, before any training
            start = self.evaluate()
            loop.history.append({"epoch": 0, **start})
            LOGGER.info("start: " + " ".join(f"{k} {v:.2f}" for k, v in start.items() if k.endswith("top1")))
        start = dict(loop.history[0])
        logs = loop.run(distributed_loader(self.train_loader, self.dist, shuffle=True,
                                           seed=int(cfg.get("seed") or 0)), self.start_epoch)
        final = {k: v for k, v in logs.items() if k.endswith(("_top1", "_entropy", "_bias"))}
        metrics = {"epochs": cfg.epochs, "selected_by": select, "best_epoch": selection.best_epoch,
                   "pseudo_labels": self.model.source, "classifier_init": self.model.classifier_init,
                   "labels_read_for_init": self.labels_read,
                   **{f"start_{k}": v for k, v in start.items() if k.endswith("_top1")}, **final,
                   **{f"last_{k}": v for k, v in logs.items() if k.startswith(("pl_", "loss"))},
                   "curves": [dict(record) for record in loop.history]}     # per epoch, epoch 0 the start
        return self.finish(metrics)
