"""The mini-PointNet that turns a neighbourhood into one token (Point-BERT's group encoder, Point-M2AE's merging)."""
from typing import Sequence

import torch
from torch import Tensor, nn


class NeighbourhoodEmbed(nn.Module):
    """Mini-PointNet over a neighbourhood: shared MLP, max pool, pooled code joined to each member,
    second shared MLP, max pool (Point-BERT's token embedding; Point-M2AE's token merging).

    Args:
        in_channels: channels of each member (3 for relative coordinates, C for merged tokens).
        first: (hidden, out) widths of the first shared MLP.
        second: (hidden, out) widths of the second one; ``out`` is the token width.
    """

    def __init__(self, in_channels: int, first: Sequence[int], second: Sequence[int]):
        super().__init__()
        self.first = self._mlp(in_channels, *first)
        self.second = self._mlp(2 * first[1], *second)

    @staticmethod
    def _mlp(in_channels: int, hidden: int, out: int) -> nn.Sequential:
        # shared over members: Linear on (V * k, C) rows, one GEMM (a 1x1 Conv1d is ~1.5x slower on CPU)
        return nn.Sequential(nn.Linear(in_channels, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                             nn.Linear(hidden, out))

    def forward(self, groups: Tensor) -> Tensor:
        """(V, k, C_in) neighbourhoods -> (V, C_out) tokens."""
        tokens, k, _ = groups.shape
        h = self.first(groups.reshape(tokens * k, -1)).view(tokens, k, -1)
        h = torch.cat([h.amax(dim=1, keepdim=True).expand_as(h), h], dim=2)
        return self.second(h.reshape(tokens * k, -1)).view(tokens, k, -1).amax(dim=1)
