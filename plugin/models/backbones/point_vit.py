"""Point-BERT / Point-MAE transformer encoder (``PointViTEncoder``), registered in OpenPoints ``MODELS``.

Point-BERT (Yu et al., CVPR 2022) and Point-MAE (Pang et al., ECCV 2022) share it: point tokens from
:class:`~.point_tokenizer.PointTokenizer`, a positional MLP of each token's centre added before every
block, a CLS token, pre-norm ViT blocks (timm's ``Block``) and a final LayerNorm. The global feature is
``[CLS, max over tokens]``, the input of both papers' (and ULIP's) classification heads.

Masked forward (:meth:`PointViTEncoder.forward_tokens`): ``replace`` swaps masked tokens for a learnable
[MASK] token and keeps their positions (Point-BERT); ``drop`` keeps the visible tokens only (Point-MAE).
"""
from typing import Callable, Dict, NamedTuple, Optional, Union

import torch
from openpoints.models.build import MODELS
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from ...errors import BadInputError, ConfigError
from .feature_taps import register_tap
from .point_tokenizer import PointTokenizer

MaskArg = Union[None, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]
MASK_MODES = ("replace", "drop")


class EncodedTokens(NamedTuple):
    """Output of :meth:`PointViTEncoder.forward_tokens`.

    ``L`` is G without a mask or with ``mode='replace'``; with ``mode='drop'`` the most visible tokens of a sample.
    """

    centers: torch.Tensor            # (B, G, 3) centres of all groups
    mask: Optional[torch.Tensor]     # (B, G) bool, True = masked; None without a mask
    cls: torch.Tensor                # (B, C) CLS output
    tokens: torch.Tensor             # (B, L, C) token outputs, after the final norm
    index: torch.Tensor              # (B, L) group of each output token (meaningless where not valid)
    valid: torch.Tensor              # (B, L) bool, False at padding (drop mode with unequal visible counts)
    embedded: torch.Tensor           # (B, G, C) every group's token embedding before masking (the MPM target)


@MODELS.register_module()
class PointViTEncoder(nn.Module):
    """Point-BERT / Point-MAE transformer encoder; the defaults are the published one (21.8M parameters).

    Args:
        embed_dim: token width C.
        depth: number of transformer blocks.
        num_heads: attention heads.
        mlp_ratio: hidden width of the block MLPs over ``embed_dim``.
        qkv_bias: bias in the qkv projection (False in Point-BERT and Point-MAE).
        drop_path_rate: stochastic depth of the last block, rising linearly from 0 at the first.
        num_groups: tokens G per cloud (FPS centres).
        group_size: points k per group (nearest neighbours of the centre).
        mask_token: hold a learnable [MASK] token for ``mode='replace'`` (BERT-style pre-training); off by
            default so that no parameter is left out of a supervised step's loss.
        group_dim: width of the group embedding, projected to ``embed_dim`` after the pool (256 in Point-BERT
            and ULIP, whose checkpoints then load); None: the group embedding is ``embed_dim`` wide (Point-MAE).
    """

    def __init__(self, embed_dim: int = 384, depth: int = 12, num_heads: int = 6, mlp_ratio: float = 4.0,
                 qkv_bias: bool = False, drop_path_rate: float = 0.1, num_groups: int = 64, group_size: int = 32,
                 mask_token: bool = False, group_dim: Optional[int] = None):
        super().__init__()
        if embed_dim % num_heads:
            raise ConfigError(f"encoder_args.embed_dim {embed_dim} is not divisible by encoder_args.num_heads "
                              f"{num_heads}: choose a width that is a multiple of the head count.")
        self.embed_dim = embed_dim
        self.out_channels = 2 * embed_dim   # [CLS, max over tokens], what BaseCls gives its head
        self.tokenizer = PointTokenizer(embed_dim, num_groups, group_size, group_dim)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, embed_dim))
        # 1-D, so that OpenPoints' optimizer factory exempts them from weight decay (as Point-MAE's tokens)
        self.cls_token = nn.Parameter(torch.zeros(embed_dim))
        self.cls_pos = nn.Parameter(torch.zeros(embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(embed_dim)) if mask_token else None
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        # nn.LayerNorm (eps 1e-5) as Point-BERT, Point-MAE and ULIP, not timm's default eps 1e-6
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias=qkv_bias, drop_path=rate,
                                          norm_layer=nn.LayerNorm)
                                    for rate in rates)
        self.norm = nn.LayerNorm(embed_dim)
        self.apply(_init_weights)
        for token in (self.cls_token, self.cls_pos, self.mask_token):
            if token is not None:
                trunc_normal_(token, std=0.02)

    def forward_tokens(self, pos: torch.Tensor, mask: MaskArg = None, mode: str = "replace") -> EncodedTokens:
        """Encode a cloud, optionally with masked tokens.

        Args:
            pos: (B, N, 3) points.
            mask: (B, G) bool, True = masked; or a function of the centres (B, G, 3) returning one, e.g.
                ``functools.partial(block_token_mask, ratio=0.6)``; None: no masking.
            mode: ``replace`` (Point-BERT: masked tokens become the [MASK] token, positions kept) or ``drop``
                (Point-MAE: only visible tokens enter; unequal counts are padded and masked out of attention).
        """
        if mode not in MASK_MODES:
            raise ConfigError(f"Unknown mask mode '{mode}': use one of {', '.join(MASK_MODES)}.")
        centers, tokens = self.tokenizer(pos)
        embedded = tokens
        batch, n_groups = tokens.shape[:2]
        if callable(mask):
            mask = mask(centers)
        if mask is not None and (mask.shape != (batch, n_groups) or mask.dtype != torch.bool):
            raise BadInputError(f"The token mask must be a bool tensor of shape {(batch, n_groups)}, "
                                f"got {mask.dtype} {tuple(mask.shape)}.")
        pos_emb = self.pos_embed(centers)
        index = torch.arange(n_groups, device=pos.device).expand(batch, -1)
        valid = torch.ones(batch, n_groups, dtype=torch.bool, device=pos.device)
        attn_mask = None
        if mask is not None and mode == "replace":
            if self.mask_token is None:
                raise ConfigError("mode='replace' needs a [MASK] token: set encoder_args.mask_token=True.")
            tokens = torch.where(mask[..., None], self.mask_token.to(tokens.dtype), tokens)
        elif mask is not None:
            visible = ~mask
            counts = visible.sum(1)
            # visible groups first, in group order; the tail of a sample with fewer visible ones is padding
            index = (~visible).to(torch.uint8).argsort(dim=1, stable=True)[:, :int(counts.max())]
            valid = torch.arange(index.shape[1], device=pos.device) < counts[:, None]
            tokens = tokens.gather(1, index[..., None].expand(-1, -1, tokens.shape[-1]))
            pos_emb = pos_emb.gather(1, index[..., None].expand(-1, -1, pos_emb.shape[-1]))
            if not bool(valid.all()):
                attn_mask = _padding_bias(valid, tokens.dtype)
        x = torch.cat([self.cls_token.expand(batch, 1, -1).to(tokens.dtype), tokens], dim=1)
        pos_emb = torch.cat([self.cls_pos.expand(batch, 1, -1).to(pos_emb.dtype), pos_emb], dim=1)
        for block in self.blocks:
            x = block(x + pos_emb, attn_mask=attn_mask)   # positions enter every block (Point-BERT, Point-MAE)
        x = self.norm(x)
        return EncodedTokens(centers, mask, x[:, 0], x[:, 1:], index, valid, embedded)

    def global_feature(self, out: EncodedTokens) -> torch.Tensor:
        """(B, 2C) ``[CLS, max over the valid tokens]`` of :meth:`forward_tokens`' output."""
        tokens = out.tokens.masked_fill(~out.valid[..., None], float("-inf"))
        return torch.cat([out.cls, tokens.max(dim=1)[0]], dim=-1)

    def forward_cls_feat(self, data: Union[Dict[str, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """(B, 2C) global feature of an OpenPoints batch (``pos`` (B, N, 3); ``x`` unread) or of (B, N, 3) points."""
        return self.global_feature(self.forward_tokens(_points(data)))

    def forward(self, data: Union[Dict[str, torch.Tensor], torch.Tensor], mask: MaskArg = None,
                mode: str = "replace") -> EncodedTokens:
        """:meth:`forward_tokens` of an OpenPoints batch or of (B, N, 3) points."""
        return self.forward_tokens(_points(data), mask, mode)


def _points(data: Union[Dict[str, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The (B, N, 3) coordinates of an OpenPoints batch, or the tensor itself."""
    return data["pos"] if isinstance(data, dict) else data


def _padding_bias(valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive attention bias (B, 1, 1, 1+L): 0 for CLS and valid tokens, -inf for padding keys.

    Additive rather than boolean: timm's non-fused attention path adds the mask to the scores.
    """
    keys = torch.cat([valid.new_ones(valid.shape[0], 1), valid], dim=1)
    bias = torch.zeros(keys.shape, dtype=dtype, device=valid.device).masked_fill(~keys, float("-inf"))
    return bias[:, None, None]


def _init_weights(module: nn.Module) -> None:
    """Point-MAE's initialisation: truncated normal (std 0.02) linear and conv weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Conv1d)):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@register_tap("PointViTEncoder")
def point_vit_tap(encoder: PointViTEncoder, data: Dict[str, torch.Tensor]):
    """Token centres (B, G, 3), token outputs (B, C, G); global ``[CLS, max]`` (B, 2C) as ``forward_cls_feat``."""
    out = encoder.forward_tokens(_points(data))
    return out.centers, out.tokens.transpose(1, 2), encoder.global_feature(out)
