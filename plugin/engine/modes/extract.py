"""``extract`` mode: write the global features of a frozen encoder and the labels of splits to ``.npz``."""
import logging
from typing import Any, Dict

import numpy as np
import torch

from ...io import save_npz
from .. import builders
from ..batch import prepare_batch
from ..data import probe_loader, progress
from ..encoder_weights import load_encoder_weights
from ..registry import RUNNERS
from ..runner import Runner

LOGGER = logging.getLogger("plugin")


@RUNNERS.register_module(name="extract")
class ExtractRunner(Runner):
    """Write ``features_<split>.npz`` (``features`` (N,C) float32, ``labels`` (N,) int64) per split.

    Reads ``extract.splits`` (default ``[train, test]``) and ``load_path`` (optional: without it the
    encoder is randomly initialised, which is the baseline of a linear probe). Features are the
    encoder's global embedding (``forward_cls_feat``) with the model in eval mode, in dataset order,
    read as ``svm`` reads them (:func:`~plugin.engine.data.probe_loader`: the test-time transforms, no
    augmentation), so the same weights give the same features whatever the seed.
    """

    def run(self) -> Dict[str, Any]:
        cfg = self.cfg
        model = builders.build_model(cfg).to(self.device).eval()
        loaded = load_encoder_weights(model, cfg.load_path) if cfg.get("load_path") else 0
        LOGGER.info(f"encoder tensors loaded: {loaded}" if loaded else "encoder randomly initialised")
        outputs = {}
        for split in (cfg.get("extract") or {}).get("splits") or ["train", "test"]:
            loader = probe_loader(cfg, split)
            features, labels = [], []
            with torch.no_grad():
                for data in progress(loader, f"extract {split}"):
                    data = prepare_batch(data, self.device, self.in_channels, cfg.get("num_points"),
                                         cfg.get("feature_keys"))
                    features.append(model.encoder.forward_cls_feat(data).float().cpu().numpy())
                    labels.append(data["y"].cpu().numpy())
            path = self.folder.file(f"features_{split}.npz")
            save_npz(path, features=np.concatenate(features), labels=np.concatenate(labels))
            outputs[split] = {"path": path, "count": int(sum(len(l) for l in labels)),
                              "dim": int(features[0].shape[1])}
            LOGGER.info(f"{split}: {outputs[split]['count']} x {outputs[split]['dim']} features -> {path}")
        return self.finish({"load_path": cfg.get("load_path"), "encoder_tensors_loaded": loaded,
                            "splits": outputs})
