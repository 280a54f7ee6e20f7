"""``retrieval`` mode: cross-modal retrieval between a split's images and its shapes (3D objects).

The pretext model of ``model`` (a :class:`~plugin.models.base.PretextModel` with ``supports_retrieval``, e.g.
CLIPAlign) loads ``pretrained_path`` with ``load_export``, embeds every sample's image (``encode_image``) and
every distinct shape once (``encode_3d``), and :func:`~plugin.eval.cross_modal_retrieval` ranks shapes for
images (``i2s``) and images for shapes (``s2i``): top-1, top-5 and mAP in percent, and a category-level top-1
(the first-ranked item has the query's label) as a secondary figure.

Which samples show the same object is read from the batch key ``retrieval.object_key``: ``auto`` takes
``shape_index`` where the dataset gives it (Pix3D: many images per shape, so the shape gallery holds each
distinct shape once) and else ``index`` (ClipTriplets: one image per object, each object's image against its
own shape). ``retrieval.gallery`` chooses the whole split (``full``, the default) or the release's shuffled
batches of ``retrieval.batch_size`` (``batch``, :func:`~plugin.eval.batch_gallery`).
"""
import logging
from typing import Any, Dict, List, Tuple

import numpy as np
import torch

from ...errors import BadInputError, ConfigError
from ...eval import check_protocol, cross_modal_retrieval
from ...io import save_npz
from ...models.base import Batch, PretextModel
from ...vis.retrieval_plots import plot_cumulative_match
from .. import builders
from ..batch import prepare_batch
from ..config import optional_path
from ..data import build_dataloader, progress
from ..registry import RUNNERS
from ..run_folder import load_checkpoint
from ..runner import Runner

LOGGER = logging.getLogger("plugin")
OBJECT_KEYS = ("shape_index", "index")  # what object_key: auto tries, in this order


def rows_of(batch: Batch, keep: torch.Tensor) -> Batch:
    """The samples ``keep`` of a collated batch: every tensor or list with one entry per sample is indexed.

    Args:
        batch: a prepared batch of B samples.
        keep: (K,) int64 indices of the samples to keep.
    """
    size = len(batch["pos"])
    rows = keep.tolist()
    return {key: value[keep.to(value.device)] if torch.is_tensor(value) and value.dim() and len(value) == size
            else [value[i] for i in rows] if isinstance(value, list) and len(value) == size else value
            for key, value in batch.items()}


@RUNNERS.register_module(name="retrieval")
class RetrievalRunner(Runner):
    """Image->shape and shape->image retrieval of ``retrieval.split`` with ``model``'s encoders.

    Reads ``model`` (``NAME`` a PretextModel with ``supports_retrieval``), ``pretrained_path`` (optional: its
    pre-training checkpoint; without it the model keeps its initial weights, with a warning) and ``retrieval``
    (``split``, ``gallery``, ``batch_size``, ``seed``, ``object_key``; see ``cfgs/default.yaml``).
    ``metrics.json`` gets the figures of :func:`~plugin.eval.cross_modal_retrieval` (``i2s_top1``,
    ``i2s_top5``, ``i2s_map``, ``s2i_top1``, ``s2i_top5``, ``s2i_map``, ``i2s_category_top1``,
    ``s2i_category_top1``, ``queries_i2s``, ``queries_s2i``), ``images``, ``shapes``, ``split``, ``gallery``,
    ``object_key``, ``model`` and ``pretrained``; ``retrieval_<split>.npz`` holds the rank of each query's first
    relevant item (``i2s_rank``, ``s2i_rank``) and each image's object and label, ``retrieval_<split>.png`` their
    cumulative match curves (:func:`~plugin.vis.retrieval_plots.plot_cumulative_match`).
    """

    def run(self) -> Dict[str, Any]:
        cfg = self.cfg
        options = cfg.get("retrieval") or {}
        split, gallery = options.get("split") or "test", options.get("gallery") or "full"
        batch_size, seed = options.get("batch_size", 128), options.get("seed", 0)
        check_protocol(gallery, batch_size, seed)  # before anything is embedded
        name = (cfg.get("model") or {}).get("NAME")
        if not name:
            raise ConfigError("mode=retrieval embeds with a pretext model: set model.NAME to a PretextModel with "
                              "supports_retrieval (e.g. CLIPAlign).")
        model = builders.build_model(cfg)
        if not isinstance(model, PretextModel) or not model.supports_retrieval:
            raise ConfigError(f"mode=retrieval needs a model with image and 3D encoders, and model.NAME={name} has "
                              f"none: name a PretextModel with supports_retrieval (e.g. CLIPAlign).")
        model = model.to(self.device).eval()
        checkpoint = optional_path(cfg)
        if checkpoint:
            model.load_export(load_checkpoint(checkpoint, "pretrained_path"), checkpoint)
        else:
            LOGGER.warning(f"retrieval with {name}'s initial weights: set pretrained_path to its pre-training "
                           f"checkpoint to evaluate trained encoders")
        loader = build_dataloader(cfg, split, batch_size=cfg.get("val_batch_size"), shuffle=False)
        images, shapes, shape_of, labels, shape_labels, object_key = self._embed(model, loader, split,
                                                                                 options.get("object_key") or "auto")
        LOGGER.info(f"retrieval on {split}: {len(images)} images, {len(shapes)} shapes (by {object_key}), "
                    f"gallery {gallery}")
        figures, ranks = cross_modal_retrieval(images, shapes, shape_of, labels, shape_labels, gallery,
                                               batch_size, seed)
        save_npz(self.folder.file(f"retrieval_{split}.npz"), i2s_rank=ranks["i2s"].numpy(),
                 s2i_rank=ranks["s2i"].numpy(), shape_of=shape_of.numpy(), labels=labels.numpy().astype(np.int64))
        plot_cumulative_match({key: value.numpy() for key, value in ranks.items()},
                              self.folder.file(f"retrieval_{split}.png"), f"{name} on {split}, {gallery} gallery")
        protocol = {"batch_size": batch_size, "seed": seed} if gallery == "batch" else {}
        return self.finish(dict(figures, **protocol, split=split, gallery=gallery, object_key=object_key,
                                images=len(images), shapes=len(shapes), model=name, pretrained=checkpoint or None))

    @torch.no_grad()
    def _embed(self, model: PretextModel, loader, split: str, object_key: str
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
        """Every sample's image feature and every distinct object's shape feature (its first sample's cloud).

        Returns:
            ``(images (N, D), shapes (U, D), shape_of (N,), labels (N,), shape labels (U,), object key)``, on the CPU.
        """
        images: List[torch.Tensor] = []
        shapes: List[torch.Tensor] = []
        shape_of: List[int] = []
        labels: List[torch.Tensor] = []
        shape_labels: List[int] = []
        row_of: Dict[int, int] = {}  # object id -> row in shapes
        for data in progress(loader, f"retrieval {split}"):
            if object_key == "auto":
                object_key = next((key for key in OBJECT_KEYS if key in data), "auto")
            if object_key not in data:
                named = " or ".join(OBJECT_KEYS) if object_key == "auto" else object_key
                raise ConfigError(f"The {split} samples have no {named} naming their object: set "
                                  f"retrieval.object_key to the batch key that does (Pix3D gives shape_index, "
                                  f"ClipTriplets index).")
            data = prepare_batch(data, self.device, self.in_channels, self.cfg.get("num_points"),
                                 self.cfg.get("feature_keys"))
            ids = [int(i) for i in data[object_key].reshape(-1).tolist()]
            new = []
            for b, i in enumerate(ids):
                if i not in row_of:
                    row_of[i] = len(row_of)
                    new.append(b)
                    shape_labels.append(int(data["y"][b]))
            if new:
                features = model.encode_3d(rows_of(data, torch.tensor(new)) if len(new) < len(ids) else data)
                shapes.append(self._checked(features, len(new), "encode_3d"))
            images.append(self._checked(model.encode_image(data), len(ids), "encode_image"))
            shape_of += [row_of[i] for i in ids]
            labels.append(data["y"].cpu())
        return (torch.cat(images), torch.cat(shapes), torch.tensor(shape_of, dtype=torch.long), torch.cat(labels),
                torch.tensor(shape_labels, dtype=torch.long), object_key)

    def _checked(self, features: torch.Tensor, rows: int, method: str) -> torch.Tensor:
        """``features`` on the CPU in float32 after checking that they are (rows, D)."""
        if features.dim() != 2 or len(features) != rows:
            raise BadInputError(f"{self.cfg.model.NAME}.{method} gave features of shape {tuple(features.shape)} for "
                                f"{rows} samples: retrieval needs one (D,) feature per sample.")
        return features.float().cpu()
