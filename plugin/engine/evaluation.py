"""Classifier evaluation shared by the supervised modes: OA and mAcc of a model on a loader."""
from typing import Dict, Optional

import torch
from torch.utils.data import DataLoader, DistributedSampler

from ..eval import accuracy
from .batch import prepare_batch
from .data import progress
from .distributed import gather_predictions


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, device: torch.device, in_channels: int,
             num_points: Optional[int], feature_keys: Optional[str], num_classes: int,
             desc: str = "eval") -> Dict[str, float]:
    """Overall accuracy (``oa``) and mean class accuracy (``macc``) in percent on ``loader``.

    Under DDP a loader with a ``DistributedSampler`` gives each rank a share of the split; the predictions
    of all ranks are gathered, so every rank returns the figures of the whole split.

    Args:
        model: the classifier (not the DDP wrapper: evaluation needs no gradient synchronisation).
        loader: the split, in dataset order.
        device, in_channels, num_points, feature_keys: as in :func:`~plugin.engine.batch.prepare_batch`.
        num_classes: for the mean class accuracy.
        desc: the progress bar's label.
    """
    model.eval()
    predicted, labels = [], []
    for data in progress(loader, desc):
        data = prepare_batch(data, device, in_channels, num_points, feature_keys)
        predicted.append(model(data).argmax(dim=1).reshape(-1))
        labels.append(data["y"].reshape(-1).long())
    pairs = torch.stack([torch.cat(predicted), torch.cat(labels)], dim=1)
    if isinstance(loader.sampler, DistributedSampler):
        pairs = gather_predictions(pairs, len(loader.dataset))
    pairs = pairs.cpu().numpy()
    return accuracy(pairs[:, 0], pairs[:, 1], num_classes)
