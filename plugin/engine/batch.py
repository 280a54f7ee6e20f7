"""Turn a collated dataloader batch into model input: device, checks, point count, features."""
from typing import Any, Dict, Optional

import torch
from openpoints.dataset import get_features_by_keys

from ..errors import BadInputError, ConfigError
from ..ops import pointnet2_utils


def check_points(pos: torch.Tensor, where: str = "batch") -> None:
    """Raise :class:`BadInputError` for an empty or non-finite point cloud batch ``pos`` (B,N,3)."""
    if pos.dim() != 3 or pos.shape[-1] != 3:
        raise BadInputError(f"The {where} has points of shape {tuple(pos.shape)}: each cloud must be (N, 3) "
                            f"xyz; check the dataset's 'pos' output.")
    if pos.shape[0] == 0 or pos.shape[1] == 0:
        raise BadInputError(f"The {where} holds an empty point cloud: remove empty files from the dataset "
                            f"or check dataset.common.data_dir.")
    if not torch.isfinite(pos).all():
        raise BadInputError(f"The {where} holds NaN or infinite coordinates: clean the dataset files or check "
                            f"the transforms in datatransforms.")


def batch_to(data: Dict[str, Any], device: torch.device) -> Dict[str, Any]:
    """``data`` with every tensor moved to ``device`` (other entries as they are)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in data.items()}


def prepare_batch(data: Dict[str, Any], device: torch.device, in_channels: int,
                  num_points: Optional[int] = None, feature_keys: Optional[str] = None) -> Dict[str, Any]:
    """Move ``data`` to ``device`` and build ``pos`` (B,N,3) and ``x`` (B,C,N) for OpenPoints models.

    Args:
        data: collated batch with ``pos`` (B,N,3), ``x`` (B,N,C') and ``y``.
        device: where the model runs.
        in_channels: the encoder's input channels; ``x`` keeps its first ``in_channels`` channels.
        num_points: clouds with more points are reduced to this many by farthest point sampling.
        feature_keys: if set (e.g. ``pos,heights``), ``x`` is the concatenation of these keys instead.
    """
    data = batch_to(data, device)
    check_points(data["pos"])
    n = data["pos"].shape[1]
    if num_points and n > num_points:
        idx = pointnet2_utils.furthest_point_sample(data["pos"].contiguous(), num_points).long()
        for key, value in data.items():
            if torch.is_tensor(value) and value.dim() == 3 and value.shape[1] == n:
                data[key] = torch.gather(value, 1, idx.unsqueeze(-1).expand(-1, -1, value.shape[-1]))
    if feature_keys:
        missing = [key for key in feature_keys.split(",") if key not in data]
        if missing:
            raise ConfigError(f"feature_keys names {', '.join(missing)}, which the dataset does not give: set "
                              f"feature_keys to keys of its samples ({', '.join(sorted(data))}) or null.")
        data["x"] = get_features_by_keys(data, feature_keys)
    else:
        data["x"] = data["x"][:, :, :in_channels].transpose(1, 2).contiguous()
    data["pos"] = data["pos"].contiguous()
    if "y" in data:
        data["y"] = data["y"].long().view(-1)
    return data
