"""Classifier evaluation shared by the supervised modes: OA and mAcc of a model on a loader."""
from typing import Dict, Optional

import numpy as np
import torch

from ..eval import accuracy
from .batch import prepare_batch
from .data import progress


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, device: torch.device, in_channels: int,
             num_points: Optional[int], feature_keys: Optional[str], num_classes: int,
             desc: str = "eval") -> Dict[str, float]:
    """Overall accuracy (``oa``) and mean class accuracy (``macc``) in percent on ``loader``."""
    model.eval()
    predicted, labels = [], []
    for data in progress(loader, desc):
        data = prepare_batch(data, device, in_channels, num_points, feature_keys)
        predicted.append(model(data).argmax(dim=1).cpu().numpy().reshape(-1))
        labels.append(data["y"].cpu().numpy().reshape(-1))
    return accuracy(np.concatenate(predicted), np.concatenate(labels), num_classes)
