"""``gdpa`` and ``fewshot`` modes: train CLIP2Point's Gated Dual-Path Adapter.

Both encoders (CLIP's visual tower and the pre-trained depth encoder) are frozen and every cloud is
rendered from the same fixed views, so the per-view features of each split are computed once
(:func:`extract_path_features`) and the adapter trains on them for all epochs. ``mode=fewshot``
trains on K clouds per class of the train split (:func:`~plugin.eval.splits.draw_per_class`); ``mode=gdpa``
trains on the whole train split (fully supervised).

The reported epoch is never chosen on the test split (``adapter.select``): ``last`` reports the last
epoch; ``holdout`` holds out a seeded ``adapter.holdout`` share of the training clouds (of the K
shots in ``fewshot``) and reports the epoch with the best top-1 on them. The test split is read once,
after training, to score the reported checkpoint; ``metrics.json`` says which rule chose it
(``selected_by``).
"""
import copy
import logging
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from openpoints.models import build_model_from_cfg
from openpoints.utils import EasyConfig
from torch import nn

from ...clip import (ClipModel, build_depth_renderer, encode_views, load_clip_from_cfg, load_depth_encoder,
                    resolve_templates, text_cache_dir, text_classifier)
from ...errors import BadInputError, ConfigError, WeightsNotFoundError
from ...eval import draw_per_class, holdout_indices, logit_metrics, topk_accuracy
from ...io import save_json
from ...models.heads.gdpa import ADAPTER_NAME, RUNNER_MODEL_KEYS, is_adapter_config
from ...render import DepthRenderer
from .. import builders
from ..batch import prepare_batch
from ..config import optional_path
from ..data import check_training_steps, class_names_of, loader_over, probe_loader, progress
from ..registry import RUNNERS
from ..run_folder import RunFolder, load_checkpoint
from ..loop import Selection
from ..runner import EpochRunner, count_parameters

LOGGER = logging.getLogger("plugin")
SPLIT_FILE = "fewshot_split.json"
SELECTIONS = ("last", "holdout")  # adapter.select: how the reported epoch is chosen (never on the test split)


def frozen_path_encoders(clip: ClipModel, pretrained_path: Optional[str], paths: Sequence[str]) -> Dict[str, nn.Module]:
    """The frozen encoder of each path: ``clip`` = CLIP's visual tower, ``depth`` = the pre-trained depth encoder.

    Without ``pretrained_path`` the depth path uses CLIP's visual tower too (a warning says so).

    Args:
        clip: the loaded CLIP.
        pretrained_path: a CLIP2Point pre-training checkpoint holding ``depth_encoder``, or None.
        paths: the paths the adapter reads (``GatedDualPathAdapter.paths``).
    """
    encoders: Dict[str, nn.Module] = {}
    if "clip" in paths:
        encoders["clip"] = clip.visual
    if "depth" in paths:
        if pretrained_path:
            encoders["depth"] = load_depth_encoder(copy.deepcopy(clip.visual), pretrained_path)
        else:
            LOGGER.warning("pretrained_path is not set: the depth path uses CLIP's visual encoder, not a CLIP2Point "
                           "pre-trained depth encoder")
            encoders["depth"] = clip.visual
    for encoder in encoders.values():
        encoder.eval().requires_grad_(False)
    return encoders


def encode_paths(points: torch.Tensor, renderer: DepthRenderer,
                 encoders: Mapping[str, nn.Module]) -> Dict[str, torch.Tensor]:
    """Per-view features (B, V, D) of each path from the same depth images of ``points`` (B, N, 3).

    Features are L2-normalised per view, as CLIP's embeddings, so both paths enter the adapter on one
    scale. An encoder shared by two paths runs once. Wrap the call in ``torch.no_grad()`` for extraction.

    Args:
        points: the clouds.
        renderer: the depth renderer (V views).
        encoders: path name -> frozen image encoder, from :func:`frozen_path_encoders`.
    """
    images, done = renderer(points.float()), {}
    for encoder in encoders.values():
        if id(encoder) not in done:
            done[id(encoder)] = F.normalize(encode_views(encoder, images), dim=-1)
    return {path: done[id(encoder)] for path, encoder in encoders.items()}


@torch.no_grad()
def extract_path_features(loader, renderer: DepthRenderer, encoders: Mapping[str, nn.Module], device: torch.device,
                          num_points: Optional[int], desc: str) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
    """Per-view features ``{path: (S, V, D)}`` and labels (S,) of every cloud of ``loader``, on the CPU.

    Args:
        loader: the split, unshuffled and unaugmented.
        renderer: the depth renderer.
        encoders: path name -> frozen image encoder.
        device: where rendering and encoding run.
        num_points: clouds with more points are reduced to this many by FPS.
        desc: the progress bar's label.
    """
    chunks: Dict[str, List[torch.Tensor]] = {path: [] for path in encoders}
    labels = []
    for data in progress(loader, desc, unit="cloud batch"):
        data = prepare_batch(data, device, 3, num_points)
        for path, features in encode_paths(data["pos"], renderer, encoders).items():
            chunks[path].append(features.cpu())
        labels.append(data["y"].cpu())
    if not labels:
        raise BadInputError(f"The {desc} split holds no clouds: check dataset.common.data_dir and the split lists.")
    return {path: torch.cat(parts) for path, parts in chunks.items()}, torch.cat(labels)


class FeatureBatches:
    """Shuffled batches ``(features, labels)`` of cached per-view features, a new order every pass.

    Args:
        features: path name -> (S, V, D) features on the model's device.
        labels: (S,) classes on the model's device.
        batch_size: samples per batch.
    """

    def __init__(self, features: Mapping[str, torch.Tensor], labels: torch.Tensor, batch_size: int):
        self.features, self.labels, self.batch_size = features, labels, batch_size

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[Tuple[Dict[str, torch.Tensor], torch.Tensor]]:
        order = torch.randperm(len(self.labels)).to(self.labels.device)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            yield {path: value[idx] for path, value in self.features.items()}, self.labels[idx]


@torch.no_grad()
def adapter_logits(model: nn.Module, features: Mapping[str, torch.Tensor], batch_size: int) -> torch.Tensor:
    """Logits (S, C) of cached features, in eval mode.

    Args:
        model: the adapter.
        features: path name -> (S, V, D) features on the model's device.
        batch_size: samples per forward pass.
    """
    model.eval()
    total = len(next(iter(features.values())))
    return torch.cat([model(**{path: value[start:start + batch_size] for path, value in features.items()})
                      for start in range(0, total, batch_size)])


@RUNNERS.register_module(name="gdpa")
class AdapterRunner(EpochRunner):
    """Fully supervised training of :class:`~plugin.models.heads.gdpa.GatedDualPathAdapter` (``mode=gdpa``).

    Reads ``model`` (the adapter's arguments plus ``clip``: the CLIP of the CLIP path and of the text,
    ``render``: :class:`DepthRenderer` keys, ``templates``: prompt templates, ``text_cache``: folder of
    cached text features, default ``<root_dir>/cache/text_features``), ``pretrained_path`` (a CLIP2Point
    pre-training checkpoint whose ``depth_encoder`` feeds the depth path; without it the depth path uses
    CLIP's visual tower), ``adapter.select``/``adapter.holdout`` (how the reported epoch is chosen, see the
    module docstring), ``lr``, ``optimizer``, ``sched``, ``epochs``, ``batch_size``, ``criterion_args``,
    ``val_freq``.

    Every epoch writes ``ckpt_latest.pth``. ``ckpt_best.pth`` is the reported epoch: the last one, or the best
    held-out top-1 (scored every ``val_freq`` epochs). After training, that checkpoint is scored on the test
    split: ``metrics.json`` gets ``top1``, ``top5``, ``macc``, ``per_class``, ``selected_by``, ``best_epoch``
    and the run's settings. ``mode=resume`` continues a killed run with its split (the features are extracted
    again; the encoders are fixed, so they are the same).

    Args:
        cfg: the run config.
        folder: the run folder; a new one by default.
        state: a checkpoint to continue from (``resume``).
    """

    resume_mode = "gdpa"

    def __init__(self, cfg: Dict[str, Any], folder: RunFolder = None, state: Dict[str, Any] = None):
        self._check_cfg(cfg)
        super().__init__(cfg, folder)
        model_cfg = cfg.model
        self.selected_by = str((cfg.get("adapter") or {}).get("select") or "last")
        self.clip = load_clip_from_cfg(model_cfg.get("clip"), device=self.device)
        self.renderer = build_depth_renderer(model_cfg.get("render"), self.clip).to(self.device)
        self.train_loader = probe_loader(cfg, "train")  # unaugmented: its features are computed once
        self.class_names = class_names_of(self.train_loader.dataset, model_cfg.get("class_names"))
        self.model = self._build_model(model_cfg).to(self.device)
        self.encoders = frozen_path_encoders(self.clip, optional_path(cfg), self.model.paths)
        templates = resolve_templates(model_cfg.get("templates") or "clip2point", "model.templates")
        cache_dir = text_cache_dir(model_cfg.get("text_cache"), cfg.root_dir)
        self.model.set_text_features(text_classifier(self.clip, self.class_names, templates, cache_dir=cache_dir))
        self.templates = templates
        self.criterion = builders.build_criterion(cfg).to(self.device)
        self.optimizer = builders.build_optimizer(cfg, self.model)
        self.scheduler = builders.build_scheduler(cfg, self.optimizer)
        self.train_indices, self.holdout_indices = self._split(state)
        if state is not None:
            self.restore(state)
        LOGGER.info(f"{ADAPTER_NAME} ({self.model.variant}): {count_parameters(self.model) / 1e6:.3f}M trainable "
                    f"parameters, {self.renderer.num_views} views of {self.renderer.image_size} px, "
                    f"{len(self.class_names)} classes; reported epoch: {self.selected_by}")

    @staticmethod
    def _check_cfg(cfg: Mapping[str, Any]) -> None:
        """Fail before the run folder exists on a wrong model, selection rule or a missing checkpoint file."""
        if not is_adapter_config(cfg):
            raise ConfigError(f"mode={cfg.get('mode')} trains the Gated Dual-Path Adapter: set model.NAME to "
                              f"{ADAPTER_NAME}, e.g. with cfgs/modelnet40/clip2point-gdpa-fewshot.yaml.")
        selection = (cfg.get("adapter") or {}).get("select") or "last"
        if selection not in SELECTIONS:
            raise ConfigError(f"Unknown adapter.select '{selection}': set it to {' or '.join(SELECTIONS)} (the test "
                              f"split never chooses the epoch).")
        path = optional_path(cfg)
        if path and not os.path.isfile(path):
            raise WeightsNotFoundError(f"CLIP2Point checkpoint '{path}' not found: set pretrained_path to the "
                                       f"ckpt_best.pth of a CLIP2Point pre-training run, or to null to use the CLIP "
                                       f"visual encoder for the depth path.")

    def _build_model(self, model_cfg: Mapping[str, Any]) -> nn.Module:
        """The adapter from ``model`` minus the runner's keys; V and D default to the renderer's and CLIP's."""
        args = EasyConfig({k: copy.deepcopy(v) for k, v in model_cfg.items() if k not in RUNNER_MODEL_KEYS})
        for key, actual, source in (("num_views", self.renderer.num_views, "model.render.views"),
                                    ("feature_dim", self.clip.embed_dim, f"CLIP {self.clip.name}")):
            if args.get(key) is None:
                args[key] = actual
            elif int(args[key]) != actual:
                raise ConfigError(f"model.{key} is {args[key]} but {source} gives {actual}: set model.{key} to "
                                  f"{actual} or to null.")
        args.num_classes = len(self.class_names)
        return build_model_from_cfg(args)

    def _training_pool(self) -> Optional[np.ndarray]:
        """Indices of the clouds of the train split the adapter may learn from; None: all of them."""
        return None

    def _record_split(self, pool: Optional[np.ndarray], holdout: Optional[np.ndarray]) -> None:
        """Write down a new split (the few-shot runner writes ``fewshot_split.json``)."""

    def _split(self, state: Optional[Dict[str, Any]]) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
        """Training and held-out validation indices within the train split (None: all clouds / no holdout).

        A resumed run keeps its checkpoint's split; a new one draws :meth:`_training_pool` and, for
        ``adapter.select: holdout``, holds out a seeded ``adapter.holdout`` share of it.
        """
        if state is not None:
            train, held = state.get("train_indices"), state.get("holdout_indices")
            return (None if train is None else np.asarray(train, dtype=np.int64),
                    None if held is None else np.asarray(held, dtype=np.int64))
        pool = self._training_pool()
        held = None
        if self.selected_by == "holdout":
            clouds = np.arange(len(self.train_loader.dataset)) if pool is None else pool
            keep, out = holdout_indices(len(clouds), float((self.cfg.get("adapter") or {}).get("holdout") or 0.2),
                                        int(self.cfg.get("seed") or 0), key="adapter.holdout")
            pool, held = clouds[keep], clouds[out]
            LOGGER.info(f"epoch selection on {len(held)} training clouds held out from training ({len(pool)} left)")
        self._record_split(pool, held)
        return pool, held

    def legacy_selection(self, state: Dict[str, Any]) -> Dict[str, Any]:
        return {"best": state.get("best_top1", -1.0), "best_epoch": state.get("best_epoch", 0)}

    def checkpoint_extra(self) -> Dict[str, Any]:
        train = None if self.train_indices is None else self.train_indices.tolist()
        held = None if self.holdout_indices is None else self.holdout_indices.tolist()
        return {"train_indices": train, "holdout_indices": held, "selected_by": self.selected_by}

    def _features(self, split: str, indices: Optional[np.ndarray] = None,
                  name: Optional[str] = None) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        """Cached per-view features and labels of ``split`` (only ``indices`` of it if given), on the device.

        Args:
            split: ``train`` or ``test``.
            indices: the clouds of the split to extract (None: all).
            name: what the clouds are, for the log (default: the split).
        """
        name = name or split
        loader = self.train_loader if split == "train" else probe_loader(self.cfg, split)
        if indices is not None:
            loader = loader_over(loader, indices)
        with builders.isolated_rng(int(self.cfg.get("seed") or 0)):  # the same draws in every resumed segment
            features, labels = extract_path_features(loader, self.renderer, self.encoders, self.device,
                                                     self.cfg.get("num_points"), f"features {name}")
        if int(labels.max()) >= len(self.class_names):
            raise ConfigError(f"Label {int(labels.max())} of the {split} split has no class name "
                              f"({len(self.class_names)} names): set model.class_names to all names in label order.")
        LOGGER.info(f"{name}: {len(labels)} clouds x {self.renderer.num_views} views, paths "
                    f"{', '.join(features)}")
        return {path: value.to(self.device) for path, value in features.items()}, labels.to(self.device)

    def run(self) -> Dict[str, Any]:
        cfg = self.cfg
        samples = len(self.train_loader.dataset) if self.train_indices is None else len(self.train_indices)
        check_training_steps(samples, int(cfg.batch_size), drop_last=False, what="adapter's training set")
        train_features, train_labels = self._features("train", self.train_indices)
        held_out = None if self.holdout_indices is None else self._features("train", self.holdout_indices, "holdout")
        batch_size, eval_batch = int(cfg.batch_size), int(cfg.get("val_batch_size") or cfg.batch_size)

        def step(batch: Tuple[Dict[str, torch.Tensor], torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, float]]:
            features, labels = batch
            logits = self.model(**features)
            top1 = 100.0 * float((logits.argmax(1) == labels).float().mean())
            return self.criterion(logits, labels), {"train_top1": top1}

        def validate(epoch: int) -> Dict[str, float]:
            top = topk_accuracy(adapter_logits(self.model, held_out[0], eval_batch), held_out[1], (1, 5))
            return {"holdout_top1": top[1], "holdout_top5": top[5]}

        selection = Selection("holdout_top1", "max") if held_out is not None else Selection(None)
        loop = self.make_loop(step, selection, validate if held_out is not None else None, desc="adapter")
        means = loop.run(FeatureBatches(train_features, train_labels, batch_size), self.start_epoch)
        self.model.load_state_dict(load_checkpoint(self.folder.file("ckpt_best.pth"))["model"])
        test_features, test_labels = self._features("test")  # read only now, to score the reported epoch
        logits = adapter_logits(self.model, test_features, eval_batch).cpu()
        metrics = logit_metrics(logits, test_labels.cpu(), self.class_names)
        gate = self.model.gate if self.model.variant == "gated" else None  # only the gated variant has one
        return self.finish(dict(
            top1=metrics["top1"], top5=metrics["top5"], macc=metrics["macc"], test_samples=metrics["samples"],
            train_samples=int(len(train_labels)), last_train_top1=means.get("train_top1", float("nan")),
            epochs=cfg.epochs, selected_by=self.selected_by, best_epoch=selection.best_epoch,
            best_val_top1=selection.best if held_out is not None else None,
            holdout_samples=0 if held_out is None else int(len(held_out[1])), variant=self.model.variant,
            gate=None if gate is None else float(gate.detach().cpu()[0]), logit_scale=float(self.model.scale),
            clip=self.clip.name, clip_weights=self.clip.weights, depth_encoder=optional_path(cfg) or "clip",
            views=self.renderer.views, num_views=self.renderer.num_views, templates=self.templates,
            params=count_parameters(self.model), **self._extra_metrics(), per_class=metrics["per_class"]))

    def _extra_metrics(self) -> Dict[str, Any]:
        return {"train_split": "full"}


@RUNNERS.register_module(name="fewshot")
class FewShotRunner(AdapterRunner):
    """``mode=fewshot``: :class:`AdapterRunner` on K clouds per class of the train split (CLIP2Point Tab. 4).

    ``fewshot.shots`` (K, default 16) clouds per class are drawn with ``fewshot.seed``; classes with
    fewer than K clouds use all of them (logged). With ``adapter.select: holdout`` a share of these K-shot
    clouds is held out for the epoch selection, so no label beyond the K shots is used. The drawn indices,
    the held-out ones, labels and counts go to ``fewshot_split.json`` in the run folder, and
    ``shots``/``fewshot_seed`` to ``metrics.json``. A resumed run keeps its split.

    Args:
        cfg: the run config.
        folder: the run folder; a new one by default.
        state: a checkpoint to continue from (``resume``).
    """

    resume_mode = "fewshot"

    def _split(self, state: Optional[Dict[str, Any]]) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
        options = self.cfg.get("fewshot") or {}
        self.shots, self.split_seed = int(options.get("shots", 16)), int(options.get("seed", 0))
        train, held = super()._split(state)
        if state is not None:
            LOGGER.info(f"few-shot split restored from the checkpoint ({len(train)} training clouds)")
        return train, held

    def _labels(self) -> np.ndarray:
        labels = getattr(self.train_loader.dataset, "labels", None)
        if labels is None:
            raise ConfigError(f"Dataset {type(self.train_loader.dataset).__name__} exposes no 'labels' to draw "
                              f"{self.shots} clouds per class from: use a dataset with a labels array, e.g. "
                              f"ModelNet40NormalResampled or ScanObjectNN.")
        return np.asarray(labels).reshape(-1)

    def _training_pool(self) -> np.ndarray:
        """K clouds per class of the train split (:func:`~plugin.eval.splits.draw_per_class`)."""
        if self.shots < 1:
            raise ConfigError(f"fewshot.shots is {self.shots}: set it to a positive number of samples per class, "
                              f"e.g. 16.")
        indices, self.short_classes = draw_per_class(self._labels(), self.shots,
                                                     np.random.default_rng(self.split_seed), len(self.class_names))
        if self.short_classes:
            LOGGER.warning(f"{len(self.short_classes)} classes have fewer than {self.shots} training clouds and use "
                           f"all of them: " + ", ".join(f"{self.class_names[c]} ({n})"
                                                        for c, n in self.short_classes.items()))
        return indices

    def _record_split(self, pool: Optional[np.ndarray], holdout: Optional[np.ndarray]) -> None:
        """``fewshot_split.json``: the K-shot draw (``indices``), the share held out for selection, counts."""
        held = np.zeros(0, dtype=np.int64) if holdout is None else holdout
        indices = np.sort(np.concatenate([pool, held]))
        chosen = self._labels()[indices]
        save_json({
            "shots": self.shots, "seed": self.split_seed, "indices": indices.tolist(),
            "labels": chosen.tolist(), "classes": self.class_names,
            "per_class": {name: int((chosen == c).sum()) for c, name in enumerate(self.class_names)},
            "short_classes": {self.class_names[c]: n for c, n in self.short_classes.items()},
            "selected_by": self.selected_by, "holdout_indices": held.tolist()}, self.folder.file(SPLIT_FILE))
        LOGGER.info(f"few-shot split: {len(indices)} clouds ({self.shots} per class, seed {self.split_seed}), "
                    f"{len(held)} held out for the epoch selection -> {self.folder.file(SPLIT_FILE)}")

    def _extra_metrics(self) -> Dict[str, Any]:
        return {"train_split": "fewshot", "shots": self.shots, "fewshot_seed": self.split_seed}
