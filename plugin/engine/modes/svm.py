"""``svm`` mode: a linear SVM probe on features of a frozen encoder.

The features are the encoder's own global embedding (``svm.pooling: global``, ``forward_cls_feat``) or
its tapped per-point features pooled (``max``, ``mean``, or both). With ``svm.normalize`` each probe
cloud is first centred and scaled into the unit sphere, the frame of the pre-training clouds
(``tools/render_views.py``). C is chosen by cross-validation on the train split only; the test split
is scored once at the end.
"""
import copy
import logging
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from openpoints.models import build_model_from_cfg
from openpoints.models.build import MODELS

from ...errors import ConfigError
from ...eval import linear_probe, load_features, parse_pooling, pool_features, save_features
from ...eval.linear_svm import check_search, low_shot_probe
from ...io import file_digest, fingerprint
from ...models import tap_features
from .. import builders
from ..batch import prepare_batch
from ..data import probe_loader, probe_transforms, progress
from ..encoder_weights import load_encoder_state, load_into_encoder
from ..registry import RUNNERS
from ..runner import Runner

LOGGER = logging.getLogger("plugin")
SPLITS = ("train", "test")


def build_encoder(cfg: Dict[str, Any]) -> torch.nn.Module:
    """The encoder of ``model.encoder_args`` alone (``cfg.model`` may be ``BaseCls`` or a pretext model)."""
    args = (cfg.get("model") or {}).get("encoder_args")
    if not isinstance(args, dict):
        raise ConfigError("model.encoder_args is not set: mode=svm builds the encoder from it; use a config "
                          "whose model has encoder_args, e.g. cfgs/modelnet40/pic_at_point-svm.yaml.")
    builders.check_name(args, MODELS, "model.encoder_args")
    return build_model_from_cfg(copy.deepcopy(args))


@torch.no_grad()
def extract_pooled(encoder: torch.nn.Module, loader, device: torch.device, in_channels: int,
                   num_points: Optional[int], feature_keys: Optional[str], pooling: Sequence[str],
                   desc: str) -> Tuple[np.ndarray, np.ndarray]:
    """Features (N, D) float32 and labels (N,) int64 of ``loader``: the tap's outputs pooled by ``pooling``.

    Args:
        encoder: the frozen encoder, in eval mode.
        loader: the split, unshuffled.
        device, in_channels, num_points, feature_keys: as in :func:`~plugin.engine.batch.prepare_batch`.
        pooling: names from :data:`plugin.eval.pooling.POOLINGS`.
        desc: the progress bar's label.
    """
    features, labels = [], []
    for data in progress(loader, desc):
        data = prepare_batch(data, device, in_channels, num_points, feature_keys)
        _, local, global_feat = tap_features(encoder, data)
        features.append(pool_features(local, global_feat, pooling).float().cpu().numpy())
        labels.append(data["y"].cpu().numpy())
    return np.concatenate(features), np.concatenate(labels).astype(np.int64)


@RUNNERS.register_module(name="svm")
class SVMRunner(Runner):
    """Linear SVM probe of the encoder of ``model.encoder_args``, loaded from ``load_path`` if set.

    Without ``load_path`` the encoder keeps its random initialisation (the baseline). Features of the
    train and test splits go to ``features_{train,test}.npz`` in the run folder; ``svm.feature_cache``
    names a folder whose matching files are reused instead of extracting, and which receives the new
    ones otherwise. ``metrics.json`` gets the test ``oa`` and ``macc``, the chosen ``C`` and ``cv_oa``,
    and the ``pooling`` and ``normalize`` the features were made with.
    """

    def run(self) -> Dict[str, Any]:
        cfg, svm = self.cfg, self.cfg.svm
        pooling = parse_pooling(svm.pooling, "svm.pooling")
        check_search(svm.cs, svm.folds)  # fail before the extraction, not after
        encoder = build_encoder(cfg).to(self.device).eval()
        loaded = 0
        if cfg.get("load_path"):
            report = load_into_encoder(encoder, load_encoder_state(cfg.load_path, "load_path"), cfg.load_path)
            LOGGER.info(report.summary())
            loaded = report.count
        else:
            LOGGER.info("no load_path: encoder randomly initialised (baseline)")
        weights = file_digest(cfg.load_path) if loaded else f"random init, seed {cfg.get('seed')}"
        features, reused = {}, {}
        for split in SPLITS:
            features[split], reused[split] = self._features(encoder, split, pooling, weights)
        dims = {split: features[split][0].shape for split in SPLITS}
        LOGGER.info(", ".join(f"{split}: {n} x {c}" for split, (n, c) in dims.items())
                    + f" features ({'+'.join(pooling)} pooling"
                    + (", clouds centred and scaled into the unit sphere)" if svm.normalize else ")"))
        result = linear_probe(*features["train"], *features["test"], cs=svm.cs, folds=svm.folds,
                              seed=cfg.get("seed") or 0)
        LOGGER.info("CV OA per C (train split): " + ", ".join(f"{c}: {s:.2f}" for c, s in result["cv_oa"].items()))
        if (svm.get("low_shot") or {}).get("shots"):
            result["low_shot"] = low_shot_probe(*features["train"], *features["test"], c=result["C"],
                                                shots=svm.low_shot.get("shots"), draws=svm.low_shot.get("draws", 10),
                                                seed=cfg.get("seed") or 0)
            LOGGER.info("low-shot test OA (mean over draws): " + ", ".join(
                f"{k}/class {r['oa_mean']:.2f} +- {r['oa_std']:.2f}" for k, r in result["low_shot"].items()))
        return self.finish(dict(result, load_path=cfg.get("load_path"), encoder_tensors_loaded=loaded,
                                pooling=",".join(pooling), normalize=bool(svm.normalize),
                                feature_dim=int(dims["train"][1]),
                                train_samples=int(dims["train"][0]), test_samples=int(dims["test"][0]),
                                features_reused=reused))

    def _fingerprint(self, split: str, pooling: Sequence[str], weights: str) -> str:
        """What the features of ``split`` depend on (the data files themselves are not hashed)."""
        cfg = self.cfg
        dataset = {k: v for k, v in (cfg.dataset.get(split) or {}).items() if k != "transform"}
        transforms = [probe_transforms(cfg, split, cfg.svm.normalize),
                      (cfg.get("datatransforms") or {}).get("kwargs")]
        return fingerprint({
            "split": split, "encoder_args": cfg.model.encoder_args, "weights": weights, "pooling": list(pooling),
            "dataset": [cfg.dataset.common, dataset], "transforms": transforms, "num_points": cfg.get("num_points"),
            "feature_keys": cfg.get("feature_keys"), "in_channels": self.in_channels})

    def _features(self, encoder: torch.nn.Module, split: str, pooling: Sequence[str],
                  weights: str) -> Tuple[Tuple[np.ndarray, np.ndarray], bool]:
        """``((features, labels), reused)`` of ``split``: from ``svm.feature_cache`` if it matches, else extracted."""
        name, cache_dir = f"features_{split}.npz", self.cfg.svm.get("feature_cache")
        cache = os.path.join(cache_dir, name) if cache_dir else None
        key = self._fingerprint(split, pooling, weights)
        features = load_features(cache, key) if cache else None
        reused = features is not None
        if reused:
            LOGGER.info(f"{split}: reusing the features of {cache}")
        else:
            if cache and os.path.exists(cache):
                LOGGER.info(f"{split}: {cache} was made by another encoder, weights, pooling or data config: "
                            f"extracting again")
            loader = probe_loader(self.cfg, split, self.cfg.svm.normalize)
            features = extract_pooled(encoder, loader, self.device, self.in_channels,
                                      self.cfg.get("num_points"), self.cfg.get("feature_keys"), pooling,
                                      f"features {split}")
            if cache:
                save_features(cache, *features, key, "svm.feature_cache")
        save_features(self.folder.file(name), *features, key)
        return features, reused
