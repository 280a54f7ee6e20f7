"""Point-M2AE's hierarchical point transformer (Zhang et al., NeurIPS 2022), the 3D encoder of I2P-MAE.

Three scales of tokens, each a furthest-point sample of the scale below (points -> 512 -> 256 -> 64):

- stage 1 embeds every token from its k nearest points (relative coordinates) with a mini-PointNet;
  stages 2-3 merge the features of the k nearest tokens of the previous stage the same way;
- each stage is a stack of ViT blocks (``timm``) with a positional MLP of the token centre added before
  every block, and optional local spatial attention: a token sees only tokens within the stage's radius;
- masked modelling masks the coarsest scale; a finer token is visible iff it lies in the kNN neighbourhood
  of a visible coarser token, so the visible tokens of a sample nest across scales. Samples then hold
  different numbers of visible tokens: they are packed, padded, and the padding is masked out of
  attention, token merging and pooling.
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from openpoints.models.build import MODELS
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from ...errors import BadInputError, ConfigError
from ...ops import pointnet2_utils
from .feature_taps import register_tap
from .neighbourhood_embed import NeighbourhoodEmbed

GLOBAL_POOLS = ("mean+max", "mean,max", "max", "mean")


class TokenScale(NamedTuple):
    """One scale of tokens.

    Attributes:
        centers: (B, N, 3) token centres.
        neighbours: (B, N, k) int64 indices of each token's k nearest members of the scale below
            (the input points for the first scale).
    """

    centers: Tensor
    neighbours: Tensor


class ScaleOutput(NamedTuple):
    """One encoder stage's output, at every token of its scale.

    Attributes:
        centers: (B, N, 3) token centres.
        features: (B, N, C) token features, zero at tokens that are not visible; the last stage's are
            layer-normalised, the others are as the next stage merges them (before any norm).
        visible: (B, N) bool, the tokens the encoder saw.
    """

    centers: Tensor
    features: Tensor
    visible: Tensor


def index_rows(values: Tensor, index: Tensor) -> Tensor:
    """``values[b, index[b, ...]]``: (B, N, C) rows at (B, *S) int64 indices -> (B, *S, C)."""
    flat = index.reshape(index.shape[0], -1, 1).expand(-1, -1, values.shape[-1])
    return values.gather(1, flat).reshape(*index.shape, values.shape[-1])


def group_scales(pos: Tensor, num_tokens: Sequence[int], k_neighbors: Sequence[int]) -> List[TokenScale]:
    """The token scales of a cloud: FPS centres of the scale below, each with its kNN neighbourhood there.

    Args:
        pos: (B, P, 3) points.
        num_tokens: tokens per scale, finest first, e.g. (512, 256, 64).
        k_neighbors: neighbourhood size per scale, e.g. (16, 8, 8).
    """
    scales, support = [], pos.float().contiguous()
    for tokens, k in zip(num_tokens, k_neighbors):
        centers = index_rows(support, pointnet2_utils.furthest_point_sample(support, tokens).long())
        _, neighbours = pointnet2_utils.knn(centers, support, k)
        scales.append(TokenScale(centers, neighbours.long()))
        support = centers
    return scales


def propagate_visibility(scales: Sequence[TokenScale], mask: Optional[Tensor]) -> List[Tensor]:
    """Visible tokens of every scale, finest first, from a mask of the coarsest scale.

    With a mask, a token of a finer scale is visible iff it is one of the k neighbours of a visible token
    of the next coarser scale (Point-M2AE Sec. 3.2); the union is counted per token, so no other token is
    marked. Without one (fine-tuning, feature extraction) every token of every scale is visible.

    Args:
        scales: the token scales, finest first.
        mask: (B, N_last) bool, ``True`` = masked; None: everything is visible.

    Raises:
        BadInputError: the mask has the wrong shape or hides every token of a sample.
    """
    last = scales[-1].centers
    if mask is None:
        return [torch.ones(s.centers.shape[:2], dtype=torch.bool, device=last.device) for s in scales]
    if mask.shape != last.shape[:2] or mask.dtype != torch.bool:
        raise BadInputError(f"The token mask must be a bool tensor of shape {tuple(last.shape[:2])} (True = "
                            f"masked), got {mask.dtype} {tuple(mask.shape)}.")
    if bool(mask.all(dim=1).any()):
        raise BadInputError("The token mask hides every token of a sample: keep at least one token visible.")
    visible = [~mask.to(last.device)]
    for coarse, fine in zip(reversed(scales[1:]), reversed(scales[:-1])):
        nb = coarse.neighbours
        hits = torch.zeros(fine.centers.shape[:2], dtype=torch.long, device=nb.device)
        hits.scatter_add_(1, nb.flatten(1), visible[0].unsqueeze(-1).expand_as(nb).flatten(1).long())
        visible.insert(0, hits > 0)
    return visible


def pack_visible(visible: Tensor) -> Tuple[Tensor, Tensor]:
    """Visible tokens first, in token order: ``(order (B, L), valid (B, L))``, L the largest visible count.

    ``order[b, j]`` is the token held by slot j; slots with ``valid`` False are padding, and they hold
    distinct hidden tokens, so scattering zeros through them is safe.
    """
    counts = visible.sum(dim=1)
    length = int(counts.max())
    order = torch.argsort((~visible).to(torch.uint8), dim=1, stable=True)[:, :length]
    valid = torch.arange(length, device=visible.device) < counts.unsqueeze(1)
    return order, valid


def local_attention_mask(centers: Tensor, valid: Tensor, radius: float) -> Optional[Tensor]:
    """Boolean attention mask (B, 1, L, L), ``True`` = attends: valid pairs closer than ``radius``.

    Args:
        centers: (B, L, 3) token centres.
        valid: (B, L) bool, ``False`` at padding.
        radius: local attention radius; 0 = global attention among valid tokens.

    Returns:
        The mask, or None where every pair attends (no padding, no radius). A padding slot attends to
        itself only, which keeps its softmax finite; valid slots never see padding.
    """
    if radius <= 0 and bool(valid.all()):
        return None
    allowed = valid.unsqueeze(2) & valid.unsqueeze(1)
    if radius > 0:
        dist = torch.cdist(centers.float(), centers.float(), compute_mode="donot_use_mm_for_euclid_dist")
        allowed &= dist < radius
    allowed |= torch.eye(centers.shape[1], dtype=torch.bool, device=centers.device)
    return allowed.unsqueeze(1)


def positional_mlp(dim: int) -> nn.Sequential:
    """Positional embedding of a token centre: Linear(3, dim), GELU, Linear(dim, dim)."""
    return nn.Sequential(nn.Linear(3, dim), nn.GELU(), nn.Linear(dim, dim))


def stage_blocks(dims: Sequence[int], depths: Sequence[int], num_heads: int, mlp_ratio: float,
                 drop_path_rate: float) -> nn.ModuleList:
    """timm ViT blocks per stage, stochastic depth rising linearly from 0 over all of them to ``drop_path_rate``."""
    total = sum(depths)
    rates = iter(drop_path_rate * i / max(total - 1, 1) for i in range(total))
    return nn.ModuleList(
        nn.ModuleList(Block(dim, num_heads, mlp_ratio, qkv_bias=False, drop_path=next(rates),
                            norm_layer=nn.LayerNorm) for _ in range(depth))
        for dim, depth in zip(dims, depths))


def init_vit_weights(module: nn.Module) -> None:
    """ViT initialisation: truncated-normal (std 0.02) linear weights, zero biases."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@MODELS.register_module()
class PointM2AEEncoder(nn.Module):
    """Point-M2AE's hierarchical encoder (Zhang et al., "Point-M2AE", NeurIPS 2022, Fig. 2 and Sec. 3.2).

    Args:
        in_channels: must be 3: the tokens are built from coordinates only (``data['pos']``).
        num_tokens: tokens per stage, finest first (FPS of the stage below).
        k_neighbors: neighbourhood size per stage: points per first-stage token, tokens merged per later
            token (Point-M2AE pre-training 16/8/8; I2P-MAE fine-tuning ModelNet40 48/24/24, ScanObjectNN 32/16/16).
        dims: token width per stage.
        depths: transformer blocks per stage.
        num_heads: attention heads of every block.
        mlp_ratio: hidden width of the blocks' MLP over the token width.
        drop_path_rate: stochastic depth, rising linearly from 0 over all blocks to this value.
        local_radius: local attention radius per stage (0 = global attention).
        global_pool: the global feature of ``forward_cls_feat``, from the last stage's visible tokens:
            ``mean+max`` (the two added), ``mean,max`` (concatenated), ``max`` or ``mean``.
    """

    def __init__(self, in_channels: int = 3, num_tokens: Sequence[int] = (512, 256, 64),
                 k_neighbors: Sequence[int] = (16, 8, 8), dims: Sequence[int] = (96, 192, 384),
                 depths: Sequence[int] = (5, 5, 5), num_heads: int = 6, mlp_ratio: float = 4.0,
                 drop_path_rate: float = 0.1, local_radius: Sequence[float] = (0.0, 0.0, 0.0),
                 global_pool: str = "mean+max"):
        super().__init__()
        if in_channels != 3:
            raise ConfigError(f"PointM2AEEncoder reads coordinates only, not {in_channels} input channels: set "
                              f"model.encoder_args.in_channels to 3.")
        stages = len(dims)
        lengths = {"num_tokens": num_tokens, "k_neighbors": k_neighbors, "depths": depths,
                   "local_radius": local_radius}
        wrong = [key for key, value in lengths.items() if len(value) != stages]
        if wrong:
            raise ConfigError(f"PointM2AEEncoder has {stages} stages (dims) but {', '.join(wrong)} "
                              f"{'has' if len(wrong) == 1 else 'have'} another length: give one value per stage.")
        if any(dim % num_heads for dim in dims):
            raise ConfigError(f"num_heads {num_heads} does not divide every stage width {list(dims)}: set "
                              f"model.encoder_args.num_heads to a common divisor.")
        if global_pool not in GLOBAL_POOLS:
            raise ConfigError(f"Unknown global_pool '{global_pool}': set model.encoder_args.global_pool to one of "
                              f"{', '.join(GLOBAL_POOLS)}.")
        self.num_tokens, self.k_neighbors = list(num_tokens), list(k_neighbors)
        self.local_radius, self.global_pool = [float(r) for r in local_radius], global_pool
        self.out_channels = dims[-1] * (2 if "," in global_pool else 1)

        # stage 1 embeds coordinates with Point-BERT's widths (128, 256 | 512, C); later stages merge C_prev tokens
        self.token_embed = nn.ModuleList(
            [NeighbourhoodEmbed(3, (128, 256), (512, dims[0]))]
            + [NeighbourhoodEmbed(dims[i - 1], (dims[i - 1], dims[i - 1]), (dims[i], dims[i]))
               for i in range(1, stages)])
        self.pos_embed = nn.ModuleList(positional_mlp(dim) for dim in dims)
        self.blocks = stage_blocks(dims, depths, num_heads, mlp_ratio, drop_path_rate)
        self.norm = nn.LayerNorm(dims[-1])
        self.apply(init_vit_weights)

    def tokenize(self, pos: Tensor) -> List[TokenScale]:
        """The token scales of ``pos`` (B, P, 3) with this encoder's token counts and neighbourhood sizes."""
        return group_scales(pos, self.num_tokens, self.k_neighbors)

    def forward(self, pos: Tensor, mask: Optional[Tensor] = None,
                scales: Optional[Sequence[TokenScale]] = None) -> List[ScaleOutput]:
        """Encode the visible tokens of every stage.

        Args:
            pos: (B, P, 3) points.
            mask: (B, num_tokens[-1]) bool, ``True`` = masked at the coarsest scale; None: no masking.
            scales: the token scales of ``pos`` when already computed (:meth:`tokenize`).

        Returns:
            One :class:`ScaleOutput` per stage, finest first.
        """
        scales = self.tokenize(pos) if scales is None else scales
        below = pos.to(scales[0].centers.dtype)
        outputs = []
        for stage, (scale, visible) in enumerate(zip(scales, propagate_visibility(scales, mask))):
            order, valid = pack_visible(visible)
            centers = index_rows(scale.centers, order)
            # (B, L, k, C); a visible token's members are all visible, so no hidden or padded row is merged
            members = index_rows(below, index_rows(scale.neighbours, order))
            if stage == 0:
                members = members - centers.unsqueeze(2)   # relative coordinates
            embedded = self.token_embed[stage](members[valid])   # only visible tokens reach BatchNorm
            x = embedded.new_zeros(*valid.shape, embedded.shape[-1])
            x[valid] = embedded
            attn_mask = local_attention_mask(centers, valid, self.local_radius[stage])
            pos_embed = self.pos_embed[stage](centers)
            for block in self.blocks[stage]:
                x = block(x + pos_embed, attn_mask=attn_mask)
            if stage == len(scales) - 1:
                x = self.norm(x)
            x = x * valid.unsqueeze(-1)
            below = x.new_zeros(*visible.shape, x.shape[-1]).scatter(
                1, order.unsqueeze(-1).expand_as(x), x)
            outputs.append(ScaleOutput(scale.centers, below, visible))
        return outputs

    def pool(self, output: ScaleOutput) -> Tensor:
        """The global feature (B, out_channels) of a stage output, over its visible tokens only."""
        visible = output.visible.unsqueeze(-1)
        pooled = {"mean": output.features.sum(dim=1) / visible.sum(dim=1),
                  "max": output.features.masked_fill(~visible, float("-inf")).amax(dim=1)}
        if self.global_pool == "mean+max":
            return pooled["mean"] + pooled["max"]
        return torch.cat([pooled[name] for name in self.global_pool.split(",")], dim=1)

    def forward_cls_feat(self, data: Union[dict, Tensor]) -> Tensor:
        """Global feature (B, out_channels) of ``data['pos']`` (or of a (B, P, 3) tensor), nothing masked."""
        pos = data["pos"] if isinstance(data, dict) else data
        return self.pool(self(pos)[-1])


@register_tap("PointM2AEEncoder")
def point_m2ae_tap(encoder: PointM2AEEncoder, data: dict):
    """Last stage: centres (B, L, 3), normalised token features (B, C, L); global (B, out_channels)."""
    last = encoder(data["pos"])[-1]
    return last.centers, last.features.transpose(1, 2), encoder.pool(last)
