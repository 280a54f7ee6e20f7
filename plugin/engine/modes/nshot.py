"""``nshot`` mode: the N-way K-shot ModelNet40 protocol of Point-BERT, Point-MAE and I2P-MAE.

Per fold (:func:`~plugin.eval.splits.draw_nway_kshot`, the protocol of Point-BERT's
``datasets/generate_few_shot_data.py``): N classes are drawn, K support clouds per class from the train
split and Q query clouds per class from the test split, labels remapped to ``0..N-1``. ``model`` (any
``BaseCls`` encoder, optionally initialised from ``pretrained_path`` as in ``finetune``) is trained
from scratch on the support clouds with an N-class head, and the query accuracy of the LAST epoch is the
fold's figure: nothing is selected on the query objects. ``metrics.json`` holds the mean and standard
deviation (population, ``np.std``) over the folds and every fold's figures.

Files beside the run: ``nshot_splits.json`` (seed, ways, shots, queries and per fold the class ids and
the indices of the support clouds in the train split and the query clouds in the test split: the same
seed and data give the same folds) and ``nshot_folds.json`` (each finished fold's figures, written
atomically). ``mode=resume`` continues with the fold in flight, from its ``ckpt_latest.pth``, and then
the unfinished folds; every fold re-seeds (``seed`` + fold), so a resumed run gives the figures of an
uninterrupted one on the same (CPU) path. ``nshot.epochs`` sets the epochs of every fold, so
``resume``'s ``epochs=N`` does not change an ``nshot`` run.
"""
import copy
import json
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ...errors import ConfigError
from ...eval import draw_nway_kshot, remap_labels
from ...io import save_json
from .. import builders
from ..batch import prepare_batch
from ..data import base_dataset, build_dataloader, loader_like, progress
from ..encoder_weights import load_encoder_state, load_into_encoder
from ..evaluation import evaluate
from ..loop import Selection
from ..registry import RUNNERS
from ..run_folder import RunFolder
from ..runner import EpochRunner, count_parameters

LOGGER = logging.getLogger("plugin")
SPLITS_FILE = "nshot_splits.json"
FOLDS_FILE = "nshot_folds.json"
SETTINGS = ("ways", "shots", "queries", "folds", "seed")


def nshot_settings(cfg: Dict[str, Any]) -> Dict[str, int]:
    """``nshot.{ways, shots, queries, folds, seed, epochs}`` of a run config (``epochs`` null: top-level ``epochs``).

    Args:
        cfg: the run config.
    """
    block = cfg.get("nshot") or {}
    defaults = {"ways": 5, "shots": 10, "queries": 20, "folds": 10, "seed": 0, "epochs": cfg.get("epochs")}
    settings = {}
    for key, default in defaults.items():
        value = block.get(key, default)
        value = default if value is None else value
        try:
            settings[key] = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"nshot.{key} is '{value}': set it to an integer.") from None
    if settings["epochs"] < 1:
        raise ConfigError(f"nshot.epochs is {settings['epochs']}: set it to 1 or more epochs per fold.")
    return settings


class RelabelledSubset(Dataset):
    """The samples ``indices`` of ``dataset`` with their labels replaced by ``labels`` (a fold's ``0..N-1``).

    Args:
        dataset: a dataset of OpenPoints sample dicts with ``y``.
        indices: the samples to read.
        labels: the new label of each of them.
    """

    def __init__(self, dataset: Dataset, indices: List[int], labels: np.ndarray):
        self.dataset, self.indices, self.labels = dataset, [int(i) for i in indices], np.asarray(labels)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        data = self.dataset[self.indices[idx]]
        data["y"] = self.labels[idx]
        return data


def dataset_labels(loader: DataLoader, split: str) -> np.ndarray:
    """The ``labels`` array of a loader's dataset (what the folds are drawn from).

    Args:
        loader: the split's loader.
        split: its name, for the message.
    """
    dataset = base_dataset(loader.dataset)
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise ConfigError(f"Dataset {type(dataset).__name__} ({split} split) exposes no 'labels' to draw N-way K-shot "
                          f"folds from: use a dataset with a labels array, e.g. ModelNet40NormalResampled.")
    return np.asarray(labels).reshape(-1)


@RUNNERS.register_module(name="nshot")
class NShotRunner(EpochRunner):
    """N-way K-shot classification over ``nshot.folds`` folds (see the module docstring for the protocol).

    Args:
        cfg: the run config (``nshot`` block; ``pretrained_path`` optional).
        folder: the run folder (``resume`` passes the existing one).
        state: a checkpoint to continue from (``resume``): its ``nshot_fold`` is continued if unfinished.
    """

    resume_mode = "nshot"

    def __init__(self, cfg: Dict[str, Any], folder: RunFolder = None, state: Dict[str, Any] = None):
        self.settings = nshot_settings(cfg)
        cfg.epochs = self.settings["epochs"]  # the loop and the scheduler train every fold this long
        self.pretrained_path = cfg.get("pretrained_path") or None
        # a missing file fails before the run folder exists; each fold starts from these encoder weights
        self.encoder_state = load_encoder_state(self.pretrained_path, "pretrained_path") if self.pretrained_path \
            else None
        super().__init__(cfg, folder)
        self.state = state
        if state is not None:
            self.seconds_before = float(state.get("seconds", 0.0))
        self.support_loader = build_dataloader(cfg, "train")
        self.query_loader = build_dataloader(cfg, "test")
        self.folds = self._folds()
        self.results = self._finished()
        self.fold = -1

    def _folds(self) -> List[Dict[str, Any]]:
        """The drawn folds; written to ``nshot_splits.json``, or checked against it in a continued run."""
        s = self.settings
        folds = draw_nway_kshot(dataset_labels(self.support_loader, "train"),
                                dataset_labels(self.query_loader, "test"), s["ways"], s["shots"], s["queries"],
                                s["folds"], s["seed"])
        record = {**{key: s[key] for key in SETTINGS}, "support_split": "train", "query_split": "test",
                  "protocol": "Point-BERT datasets/generate_few_shot_data.py: per fold N random classes, K support "
                              "clouds per class from the train split, Q query clouds per class from the test split; "
                              "label i is classes[i]", "folds": folds}
        path = self.folder.file(SPLITS_FILE)
        if os.path.isfile(path):
            with open(path) as f:
                if json.load(f).get("folds") != folds:
                    raise ConfigError(f"{path} holds other folds than the seed and data now give (was the data "
                                      f"changed?): restore the data, or start a new run.")
        else:
            save_json(record, path, self.folder.config_key)
        LOGGER.info(f"{s['ways']}-way {s['shots']}-shot, {s['queries']} queries per class, {s['folds']} folds "
                    f"(seed {s['seed']}): {SPLITS_FILE}")
        return folds

    def _finished(self) -> List[Dict[str, Any]]:
        """The figures of the folds finished in earlier segments of the run (``nshot_folds.json``)."""
        path = self.folder.file(FOLDS_FILE)
        if not os.path.isfile(path):
            return []
        with open(path) as f:
            return list(json.load(f).get("folds") or [])

    def checkpoint_extra(self) -> Dict[str, Any]:
        return {"nshot_fold": self.fold}

    def _save(self, name: str, epoch: int, loop_state: Dict[str, Any]) -> None:
        """Only ``ckpt_latest.pth``: nothing is selected, the last epoch of every fold is reported."""
        if name != "ckpt_best.pth":
            super()._save(name, epoch, loop_state)

    def step(self, data: Dict[str, Any]) -> Tuple[torch.Tensor, Dict[str, float]]:
        """The classification loss of one batch of support clouds."""
        data = prepare_batch(data, self.device, self.in_channels, self.cfg.get("num_points"),
                             self.cfg.get("feature_keys"))
        return self.criterion(self.model(data), data["y"]), {}

    def _fold_loaders(self, fold: Dict[str, Any]) -> Tuple[DataLoader, DataLoader]:
        """Support loader (shuffled, augmented) and query loader (test transforms) with labels ``0..N-1``."""
        loaders = []
        for loader, key in ((self.support_loader, "support"), (self.query_loader, "query")):
            labels = remap_labels(dataset_labels(loader, key)[fold[key]], fold["classes"])
            loaders.append(RelabelledSubset(loader.dataset, fold[key], labels))
        support, query = loaders
        # every support cloud is used each epoch; a last batch of one cloud is dropped (BatchNorm needs two)
        return (loader_like(self.support_loader, support, shuffle=True,
                            drop_last=len(support) % self.support_loader.batch_size == 1),
                loader_like(self.query_loader, query, shuffle=False, drop_last=False))

    def run_fold(self, index: int, state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        """Train a new model on fold ``index``'s support clouds and score its last epoch on the query clouds.

        Args:
            index: the fold.
            state: the checkpoint of this fold to continue from (None: start the fold).
        """
        fold, ways = self.folds[index], self.settings["ways"]
        self.fold, self.start_epoch, self.resumed = index, 1, None
        if self.cfg.get("seed") is not None:
            builders.seed_everything(int(self.cfg.seed) + index)
        fold_cfg = copy.deepcopy(self.cfg)
        fold_cfg.num_classes = ways
        fold_cfg.model.cls_args.num_classes = ways
        self.model = builders.build_model(fold_cfg).to(self.device)
        self.criterion = builders.build_criterion(fold_cfg).to(self.device)
        self.optimizer = builders.build_optimizer(fold_cfg, self.model)
        self.scheduler = builders.build_scheduler(fold_cfg, self.optimizer)
        if state is not None:
            self.restore(state)
        elif self.encoder_state is not None:
            LOGGER.info(load_into_encoder(self.model.encoder, self.encoder_state, self.pretrained_path).summary())
        support, query = self._fold_loaders(fold)
        loop = self.make_loop(self.step, Selection(None), desc=f"fold {index + 1}/{len(self.folds)} epoch")
        logs = loop.run(support, self.start_epoch)
        figures = evaluate(self.model, query, self.device, self.in_channels, self.cfg.get("num_points"),
                           self.cfg.get("feature_keys"), ways, desc=f"fold {index + 1} query")
        LOGGER.info(f"fold {index + 1}/{len(self.folds)} classes {fold['classes']}: query OA {figures['oa']:.2f} "
                    f"(last epoch)")
        return {"fold": index, "classes": fold["classes"], "query_oa": figures["oa"], "query_macc": figures["macc"],
                "last_loss": logs.get("loss")}

    def run(self) -> Dict[str, Any]:
        done = {int(r["fold"]) for r in self.results}
        todo = [i for i in range(len(self.folds)) if i not in done]
        if done:
            LOGGER.info(f"{len(done)} of {len(self.folds)} folds finished earlier ({FOLDS_FILE}); continuing")
        state = self.state if self.state is not None and self.state.get("nshot_fold") in todo else None
        for index in progress(todo, "folds", total=len(self.folds), initial=len(done), unit="fold"):
            result = self.run_fold(index, state if state is not None and state["nshot_fold"] == index else None)
            self.results = sorted(self.results + [result], key=lambda r: r["fold"])
            save_json({"folds": self.results}, self.folder.file(FOLDS_FILE), self.folder.config_key)
        oa = np.array([r["query_oa"] for r in self.results], dtype=np.float64)
        macc = np.array([r["query_macc"] for r in self.results], dtype=np.float64)
        s = self.settings
        return self.finish({"protocol": f"{s['ways']}-way {s['shots']}-shot", **{k: s[k] for k in SETTINGS},
                            "epochs": s["epochs"], "selected_by": "last",
                            "query_oa_mean": float(oa.mean()), "query_oa_std": float(oa.std()),
                            "query_macc_mean": float(macc.mean()), "query_macc_std": float(macc.std()),
                            "query_oa": oa.tolist(), "per_fold": self.results,
                            "pretrained_path": self.pretrained_path,
                            "params_m": count_parameters(self.model) / 1e6})

