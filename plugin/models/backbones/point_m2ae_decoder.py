"""Point-M2AE's hierarchical decoder (Zhang et al., NeurIPS 2022, Sec. 3.3), as I2P-MAE pre-trains with it.

From the coarsest scale upward: the encoder's visible tokens with a learned mask token at the masked
positions, a transformer stage, then per finer scale an upsampling by 3-NN inverse-distance interpolation
joined with the encoder's skip features of that scale (zeros where the encoder saw nothing), a fusion MLP
and another transformer stage. The prediction heads belong to the pretext model.
"""
from typing import Sequence

import torch
from timm.layers import trunc_normal_
from torch import Tensor, nn

from ...errors import ConfigError
from ...ops import ops, pointnet2_utils
from .point_m2ae import ScaleOutput, positional_mlp, stage_blocks


def interpolate_three_nn(features: Tensor, known: Tensor, unknown: Tensor) -> Tensor:
    """Features (B, C, m) at ``known`` (B, m, 3) interpolated to ``unknown`` (B, n, 3) -> (B, C, n).

    Weights ``1 / d^2`` over the three nearest known points, normalised (PointNet++ Eq. 2, p = 2, k = 3).
    """
    dist2, idx = ops.three_nn(unknown.float().contiguous(), known.float().contiguous())
    weight = 1.0 / (dist2 + 1e-8)
    weight = weight / weight.sum(dim=2, keepdim=True)
    return pointnet2_utils.three_interpolate(features.contiguous(), idx, weight)


class SkipFusion(nn.Module):
    """Joins skip and upsampled features: 1x1 conv, BN, GELU, then a residual conv-BN-GELU-conv-BN block.

    Args:
        in_channels: skip plus upsampled channels.
        out_channels: the decoder width of the finer scale.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.fuse = nn.Sequential(nn.Conv1d(in_channels, out_channels, 1), nn.BatchNorm1d(out_channels), nn.GELU())
        self.residual = nn.Sequential(
            nn.Conv1d(out_channels, out_channels, 1), nn.BatchNorm1d(out_channels), nn.GELU(),
            nn.Conv1d(out_channels, out_channels, 1), nn.BatchNorm1d(out_channels))
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, N) -> (B, C_out, N)."""
        x = self.fuse(x)
        return self.act(self.residual(x) + x)


class PointM2AEDecoder(nn.Module):
    """Hierarchical decoder over the last ``len(dims)`` scales of a :class:`PointM2AEEncoder`.

    Args:
        encoder_dims: the encoder's stage widths, finest first; the last must equal ``dims[0]``.
        dims: decoder width per scale, coarsest first (I2P-MAE: 384 at 64 tokens, 192 at 256 tokens).
        depths: transformer blocks per decoder scale.
        num_heads: attention heads of every block.
        mlp_ratio: hidden width of the blocks' MLP over the token width.
        drop_path_rate: stochastic depth, rising linearly from 0 over the decoder's blocks to this value.
    """

    def __init__(self, encoder_dims: Sequence[int] = (96, 192, 384), dims: Sequence[int] = (384, 192),
                 depths: Sequence[int] = (1, 1), num_heads: int = 6, mlp_ratio: float = 4.0,
                 drop_path_rate: float = 0.1):
        super().__init__()
        if len(depths) != len(dims) or not 1 <= len(dims) <= len(encoder_dims) or dims[0] != encoder_dims[-1]:
            raise ConfigError(f"PointM2AEDecoder dims {list(dims)} must start at the encoder's last width "
                              f"{encoder_dims[-1]}, span at most its {len(encoder_dims)} stages and match depths "
                              f"{list(depths)} in length: set the decoder's dims and depths accordingly.")
        if any(dim % num_heads for dim in dims):
            raise ConfigError(f"num_heads {num_heads} does not divide every decoder width {list(dims)}: set "
                              f"model.decoder_args.num_heads to a common divisor.")
        skips = list(encoder_dims)[::-1][1:len(dims)]   # encoder widths of the finer decoder scales
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dims[0]))
        self.skip_norms = nn.ModuleList(nn.LayerNorm(c) for c in skips)
        self.fusions = nn.ModuleList(SkipFusion(c + dims[i], dims[i + 1]) for i, c in enumerate(skips))
        self.pos_embed = nn.ModuleList(positional_mlp(dim) for dim in dims)
        self.blocks = stage_blocks(dims, depths, num_heads, mlp_ratio, drop_path_rate)
        self.norm = nn.LayerNorm(dims[-1])
        self.apply(self._init_weights)
        trunc_normal_(self.mask_token, std=0.02)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # MAE decoder initialisation: Xavier-uniform linear layers, zero biases
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, outputs: Sequence[ScaleOutput]) -> Tensor:
        """Decode every token of the finest decoded scale.

        Args:
            outputs: the encoder's stage outputs, finest first (:meth:`PointM2AEEncoder.forward`).

        Returns:
            (B, N, dims[-1]) layer-normalised features at every token (visible and masked) of scale
            ``len(outputs) - len(dims)``, the scale the prediction heads reconstruct.
        """
        coarse = outputs[-1]
        x = torch.where(coarse.visible.unsqueeze(-1), coarse.features, self.mask_token.to(coarse.features.dtype))
        centers = coarse.centers
        for i, blocks in enumerate(self.blocks):
            if i > 0:
                fine = outputs[-1 - i]
                skip = self.skip_norms[i - 1](fine.features) * fine.visible.unsqueeze(-1)
                up = interpolate_three_nn(x.transpose(1, 2), centers, fine.centers)
                x = self.fusions[i - 1](torch.cat([skip.transpose(1, 2).to(up.dtype), up], dim=1)).transpose(1, 2)
                centers = fine.centers
            pos_embed = self.pos_embed[i](centers)
            for block in blocks:
                x = block(x + pos_embed)
        return self.norm(x)
