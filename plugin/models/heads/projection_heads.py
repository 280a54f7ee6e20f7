"""Pic@Point projection heads into the shared d-dimensional space (Sec. 3.2); dropped after pre-training."""
import torch
import torch.nn.functional as F
from torch import nn


class GlobalHead(nn.Module):
    """2-layer MLP from a global embedding to ``d`` dims, L2-normalised.

    Args:
        in_channels: input embedding size.
        out_channels: d, the shared embedding size.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_channels, out_channels), nn.BatchNorm1d(out_channels),
                                 nn.ReLU(inplace=True), nn.Linear(out_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in) -> (B, d)."""
        return F.normalize(self.mlp(x), dim=1)


class PoseEncoder(nn.Module):
    """2-layer MLP from the 3x3 rotation of ``M_view`` to a pose code (Sec. 3.2).

    Args:
        out_channels: size of the pose code (64 in the paper).
    """

    def __init__(self, out_channels: int = 64):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(9, out_channels), nn.ReLU(inplace=True),
                                 nn.Linear(out_channels, out_channels))

    def forward(self, rotation: torch.Tensor) -> torch.Tensor:
        """(B, 3, 3) -> (B, out_channels)."""
        return self.mlp(rotation.flatten(1))


class LocalPointHead(nn.Module):
    """Kernel-1 Conv1d head for 3D region features; the pose code joins after the first layer.

    Args:
        in_channels: channels of the encoder's positional features f3d.
        out_channels: d, the shared embedding size.
        pose_channels: size of the pose code concatenated after the first conv (0: no conditioning).
    """

    def __init__(self, in_channels: int, out_channels: int, pose_channels: int = 0):
        super().__init__()
        self.first = nn.Sequential(nn.Conv1d(in_channels, out_channels, 1), nn.BatchNorm1d(out_channels),
                                   nn.ReLU(inplace=True))
        self.second = nn.Conv1d(out_channels + pose_channels, out_channels, 1)
        self.pose_channels = pose_channels

    def forward(self, x: torch.Tensor, pose: torch.Tensor = None) -> torch.Tensor:
        """(B, in, L) [+ pose (B, P)] -> (B, d, L), normalised over d."""
        h = self.first(x)
        if self.pose_channels:
            h = torch.cat([h, pose.unsqueeze(-1).expand(-1, -1, h.shape[-1])], dim=1)
        return F.normalize(self.second(h), dim=1)


class LocalImageHead(nn.Module):
    """Kernel-1 Conv2d head for the S x S image feature map, flattened to S*S regions.

    Args:
        in_channels: channels of the 2D backbone's top-level map f2d.
        out_channels: d, the shared embedding size.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels),
                                 nn.ReLU(inplace=True), nn.Conv2d(out_channels, out_channels, 1))

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, d, S*S) in row-major cell order, normalised over d."""
        return F.normalize(self.mlp(fmap).flatten(2), dim=1)
