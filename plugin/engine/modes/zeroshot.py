"""``zeroshot`` mode: CLIP2Point zero-shot classification of point clouds from rendered depth views.

Each test cloud is rendered to V depth images (:class:`~plugin.render.DepthRenderer`), the depth
encoder embeds every view, and the view-averaged cosine logits against CLIP text features of the
class prompts give the prediction (CLIP2Point Eq. 11, :func:`~plugin.clip.zero_shot.zero_shot_logits`).

With a pre-trained depth encoder, the run states whether its pre-training views came from the
evaluated dataset (:func:`zero_shot_protocol`): ``transductive`` (the same data root, or the same
source dataset, e.g. ModelNet40 renders evaluated on ModelNet40 or ModelNet10), ``inductive``
(other data, e.g. the paper's ShapeNet renders evaluated on ModelNet40), or ``unknown`` (a checkpoint
without its run config).

With ``model.NAME`` set, the mode evaluates that pretext model through its contract instead
(:class:`~plugin.models.base.PretextModel` with ``supports_zero_shot``): ``load_export`` loads
``pretrained_path``, ``encode_3d`` embeds each batch and ``encode_text`` the class names; the model's own
config decides views and prompts (CLIP2Point: ``model.render.views``, ``model.zero_shot_templates``).
"""
import copy
import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ...clip import (build_depth_renderer, encode_views, load_clip_from_cfg, load_depth_encoder, resolve_templates,
                    text_cache_dir, text_classifier, zero_shot_logits)
from ...errors import ConfigError
from ...eval import logit_metrics
from ...io import save_npz
from ...models.base import PretextModel
from .. import builders
from ..batch import prepare_batch
from ..config import optional_path
from ..data import build_dataloader, class_names_of, progress
from ..registry import RUNNERS
from ..run_folder import load_checkpoint
from ..runner import Runner

LOGGER = logging.getLogger("plugin")
# the source dataset whose shapes a dataset NAME (or a render's meta.json "source") holds; ModelNet10 is a
# subset of ModelNet40's shapes, so it maps to modelnet40 too
SOURCE_DATASETS = {"ModelNet40NormalResampled": "modelnet40", "ModelNet40Ply2048": "modelnet40",
                   "modelnet40_normal_resampled": "modelnet40", "modelnet40_ply_hdf5_2048": "modelnet40",
                   "ScanObjectNN": "scanobjectnn", "ScanObjectNNHardest": "scanobjectnn", "shapenet55": "shapenet55"}


def source_dataset(common: Optional[Mapping[str, Any]]) -> Tuple[Optional[str], Optional[str]]:
    """``(source dataset, resolved data root)`` of a ``dataset.common`` block; None where unknown.

    A ``RenderedViews`` folder names its source in ``meta.json`` (``tools/render_views.py --source``).

    Args:
        common: the block (``NAME``, ``data_dir``).
    """
    common = common or {}
    root = str(Path(common["data_dir"]).resolve()) if common.get("data_dir") else None
    name = str(common.get("NAME") or "")
    if name == "RenderedViews" and root:
        meta = Path(root) / "meta.json"
        name = json.loads(meta.read_text()).get("source", "") if meta.is_file() else ""
    return SOURCE_DATASETS.get(name), root


def zero_shot_protocol(pretrain_cfg: Optional[Mapping[str, Any]], eval_common: Mapping[str, Any]) -> Tuple[str, str]:
    """``(protocol, reason)``: whether the depth encoder's pre-training data is the evaluated dataset.

    ``transductive`` when both read the same data root or the same source dataset, ``inductive`` otherwise,
    ``unknown`` when the pre-training config is not known.

    Args:
        pretrain_cfg: the config of the pre-training run (its checkpoint's ``cfg``), None if absent.
        eval_common: ``dataset.common`` of the evaluation.
    """
    if not pretrain_cfg:
        return "unknown", "the checkpoint holds no run config"
    seen, seen_root = source_dataset((pretrain_cfg.get("dataset") or {}).get("common"))
    evaluated, root = source_dataset(eval_common)
    if root is not None and root == seen_root:
        return "transductive", f"pre-training read the evaluated data root {root}"
    if evaluated is not None and evaluated == seen:
        return "transductive", f"pre-training views are {seen} shapes, the evaluated dataset's own"
    return "inductive", f"pre-training data ({seen or seen_root}) is not the evaluated dataset ({evaluated or root})"


@RUNNERS.register_module(name="zeroshot")
class ZeroShotRunner(Runner):
    """Zero-shot classification of ``zeroshot.split`` with CLIP text features of the dataset's class names.

    Reads ``model.clip`` (``name``, ``pretrained``: the CLIP for text and, by default, for the depth
    views), ``model.render`` (:class:`~plugin.render.DepthRenderer` keys), ``pretrained_path`` (optional: a CLIP2Point
    pre-training checkpoint whose ``depth_encoder`` replaces the CLIP visual tower) and
    ``zeroshot`` (``split``, ``templates``, ``views``, ``text_cache``, ``class_names``).
    ``metrics.json`` gets ``top1``, ``top5``, ``macc``, ``per_class`` (percent), ``samples`` and
    ``zero_shot_protocol`` (:func:`zero_shot_protocol`; ``inductive`` with CLIP's own visual encoder);
    ``logits_<split>.npz`` holds the logits and labels.
    """

    def run(self) -> Dict[str, Any]:
        cfg = self.cfg
        options = cfg.get("zeroshot") or {}
        model_cfg = cfg.get("model") or {}
        if model_cfg.get("NAME"):
            return self.run_pretext_model()
        split = options.get("split") or "test"
        templates = resolve_templates(options.get("templates") or "clip2point")
        clip = load_clip_from_cfg(model_cfg.get("clip"), device=self.device)  # before the data: fails fast
        loader = build_dataloader(cfg, split, batch_size=cfg.get("val_batch_size"), shuffle=False)
        class_names = class_names_of(loader.dataset, options.get("class_names"))
        encoder, source = clip.visual, f"CLIP {clip.name} visual encoder"
        protocol, reason = "inductive", "CLIP's visual encoder saw no 3D data"
        checkpoint = optional_path(cfg)
        if checkpoint:
            state = load_checkpoint(checkpoint, "pretrained_path")
            encoder = load_depth_encoder(copy.deepcopy(clip.visual), checkpoint, state=state).eval()
            source = f"depth encoder of {checkpoint}"
            protocol, reason = zero_shot_protocol(state.get("cfg"), cfg.dataset.get("common"))
        (LOGGER.warning if protocol != "inductive" else LOGGER.info)(f"zero-shot protocol: {protocol} ({reason})")
        renderer = build_depth_renderer(model_cfg.get("render"), clip, options.get("views")).to(self.device)
        text = text_classifier(clip, class_names, templates,
                               cache_dir=text_cache_dir(options.get("text_cache"), cfg.root_dir))
        LOGGER.info(f"zero-shot on {split}: {len(class_names)} classes x {len(templates)} templates, "
                    f"{renderer.num_views} views of {renderer.image_size} px, {source}")

        metrics = self._classify(loader, split, class_names, text,
                                 lambda data: encode_views(encoder, renderer(data["pos"])))
        return self.finish(dict(metrics, split=split, clip=clip.name, clip_weights=clip.weights,
                                depth_encoder=checkpoint or "clip", zero_shot_protocol=protocol, templates=templates,
                                views=renderer.views, num_views=renderer.num_views))

    def run_pretext_model(self) -> Dict[str, Any]:
        """Zero-shot classification with ``model.NAME``'s ``encode_3d``/``encode_text`` (see the module docstring)."""
        cfg = self.cfg
        options = cfg.get("zeroshot") or {}
        split = options.get("split") or "test"
        model = builders.build_model(cfg)
        if not isinstance(model, PretextModel) or not model.supports_zero_shot:
            raise ConfigError(f"mode=zeroshot needs a model with zero-shot encoders, and model.NAME={cfg.model.NAME} "
                              f"has none: unset model.NAME to use CLIP's depth views, or name a PretextModel with "
                              f"supports_zero_shot.")
        model = model.to(self.device).eval()
        checkpoint = optional_path(cfg)
        protocol, reason = "inductive", "no pre-trained export was loaded"
        if checkpoint:
            state = load_checkpoint(checkpoint, "pretrained_path")
            model.load_export(state, checkpoint)
            protocol, reason = zero_shot_protocol(state.get("cfg"), cfg.dataset.get("common"))
        (LOGGER.warning if protocol != "inductive" else LOGGER.info)(f"zero-shot protocol: {protocol} ({reason})")
        loader = build_dataloader(cfg, split, batch_size=cfg.get("val_batch_size"), shuffle=False)
        class_names = class_names_of(loader.dataset, options.get("class_names"))
        LOGGER.info(f"zero-shot on {split}: {len(class_names)} classes, {cfg.model.NAME}'s encoders")
        with torch.no_grad():
            text = model.encode_text(class_names)
        metrics = self._classify(loader, split, class_names, text, model.encode_3d)
        return self.finish(dict(metrics, split=split, model=cfg.model.NAME, pretrained=checkpoint or None,
                                zero_shot_protocol=protocol))

    @torch.no_grad()
    def _classify(self, loader, split: str, class_names: Sequence[str], text: torch.Tensor,
                  encode_3d: Callable[[Dict[str, Any]], torch.Tensor]) -> Dict[str, Any]:
        """Eq. 11 logits of every cloud of ``loader`` against ``text``; writes ``logits_<split>.npz``.

        Args:
            loader: the split, unshuffled.
            split: its name, for the bar and the file.
            class_names: the C class names in label order.
            text: (C, D) text features of ``class_names``.
            encode_3d: a batch (``pos`` float) -> (B, D) or per-view (B, V, D) features.

        Returns:
            :func:`~plugin.eval.logit_metrics` of the logits.
        """
        logits, labels = [], []
        for data in progress(loader, f"zero-shot {split}"):
            data = prepare_batch(data, self.device, 3, self.cfg.get("num_points"))
            if int(data["y"].max()) >= len(class_names):
                raise ConfigError(f"Label {int(data['y'].max())} has no class name ({len(class_names)} names): "
                                  f"set zeroshot.class_names to all class names in label order.")
            logits.append(zero_shot_logits(encode_3d({**data, "pos": data["pos"].float()}), text).cpu())
            labels.append(data["y"].cpu())
        logits, labels = torch.cat(logits), torch.cat(labels)
        metrics = logit_metrics(logits, labels, class_names)
        LOGGER.info("per-class accuracy: " + ", ".join(f"{k} {v:.1f}" for k, v in metrics["per_class"].items()))
        save_npz(self.folder.file(f"logits_{split}.npz"), logits=logits.numpy(),
                 labels=labels.numpy().astype(np.int64), classes=np.array(class_names))
        return metrics
