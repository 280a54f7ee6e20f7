"""Point tokenizer of Point-BERT / Point-MAE: FPS centres, kNN groups, a mini-PointNet per group."""
from typing import Optional, Tuple

import torch
from torch import nn

from ...errors import BadInputError
from ...ops import ops
from .neighbourhood_embed import NeighbourhoodEmbed


def check_points(pos: torch.Tensor, min_points: int, owner: str) -> None:
    """Raise :class:`BadInputError` unless ``pos`` is a (B, N, 3) cloud with N >= ``min_points``.

    Args:
        pos: the point coordinates.
        min_points: the fewest points per cloud the caller can group.
        owner: the class named in the message.
    """
    if pos.dim() != 3 or pos.shape[-1] != 3:
        raise BadInputError(f"{owner} takes point coordinates of shape (B, N, 3), got {tuple(pos.shape)}.")
    if pos.shape[1] < min_points:
        raise BadInputError(f"{owner} needs at least {min_points} points per cloud, got {pos.shape[1]}: raise "
                            f"num_points or lower encoder_args.num_groups / encoder_args.group_size.")


class PointTokenizer(nn.Module):
    """One token per local group: ``num_groups`` centres by furthest point sampling, their ``group_size``
    nearest points relative to the centre, encoded by Point-BERT's mini-PointNet
    (:class:`~.neighbourhood_embed.NeighbourhoodEmbed`, 3 -> 128 -> 256, max, 512 -> 512 -> C, max).

    Args:
        out_channels: token width.
        num_groups: number of groups (tokens) G.
        group_size: points per group k.
        group_dim: width of the group embedding when it differs from ``out_channels``; a Linear after the
            pool then projects it (Point-BERT's and ULIP's ``reduce_dim``, 256 -> 384). None: no projection.
    """

    def __init__(self, out_channels: int, num_groups: int = 64, group_size: int = 32, group_dim: Optional[int] = None):
        super().__init__()
        self.num_groups = num_groups
        self.group_size = group_size
        self.encoder = NeighbourhoodEmbed(3, (128, 256), (512, group_dim or out_channels))
        self.project = nn.Linear(group_dim, out_channels) if group_dim else None

    def group(self, pos: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Centres (B, G, 3) and their neighbourhoods relative to the centre (B, G, k, 3)."""
        check_points(pos, max(self.num_groups, self.group_size), type(self).__name__)
        batch = torch.arange(pos.shape[0], device=pos.device)[:, None]
        centers = pos[batch, ops.furthest_point_sample(pos.detach(), self.num_groups).long()]
        _, idx = ops.knn(centers.detach(), pos.detach(), self.group_size)                  # (B, G, k)
        neighbours = pos[batch[:, :, None], idx.long()]
        return centers, neighbours - centers[:, :, None]

    def forward(self, pos: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, N, 3) points -> centres (B, G, 3) and tokens (B, G, C)."""
        centers, groups = self.group(pos)
        batch, n_groups = groups.shape[:2]
        tokens = self.encoder(groups.flatten(0, 1)).view(batch, n_groups, -1)
        return centers, tokens if self.project is None else self.project(tokens)
