"""Token masks for masked point modelling: random (Point-MAE) and block (Point-BERT).

Both return a boolean ``(B, G)`` mask, ``True`` = masked, with exactly ``round(ratio * G)`` masked
tokens in every sample, so masked-out sequences have equal lengths across the batch.
"""
from typing import Optional

import torch

from ...errors import ConfigError


def masked_count(tokens: int, ratio: float) -> int:
    """Number of masked tokens per sample, ``round(ratio * tokens)``.

    Raises:
        ConfigError: ``ratio`` is outside [0, 1) or ``tokens`` < 1.
    """
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"Mask ratio {ratio} is outside [0, 1): set the mask ratio to a value such as 0.6.")
    if tokens < 1:
        raise ConfigError(f"Cannot mask {tokens} tokens: set the number of groups to at least 1.")
    return round(ratio * tokens)


def _random_device(generator: Optional[torch.Generator], device) -> torch.device:
    # Random numbers are drawn where the generator lives, then moved to the target device.
    return generator.device if generator is not None else torch.device(device or "cpu")


def random_token_mask(batch: int, tokens: int, ratio: float, generator: Optional[torch.Generator] = None,
                      device=None) -> torch.Tensor:
    """Uniformly random mask of ``round(ratio * tokens)`` tokens per sample (Point-MAE).

    Args:
        batch: number of samples B.
        tokens: number of tokens G per sample.
        ratio: fraction of tokens to mask, in [0, 1).
        generator: optional generator, for reproducible masks.
        device: device of the returned mask (default: CPU).

    Returns:
        (B, G) bool tensor, ``True`` = masked.
    """
    n_mask = masked_count(tokens, ratio)
    noise = torch.rand(batch, tokens, generator=generator, device=_random_device(generator, device))
    rank = noise.argsort(dim=1).argsort(dim=1)   # rank of each token in a random permutation
    return (rank < n_mask).to(device or noise.device)


def block_token_mask(centers: torch.Tensor, ratio: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Block mask: per sample a random centre and its nearest centres, itself included (Point-BERT).

    Args:
        centers: (B, G, 3) token centres.
        ratio: fraction of tokens to mask, in [0, 1).
        generator: optional generator, for reproducible masks.

    Returns:
        (B, G) bool tensor on ``centers.device``, ``True`` = masked.
    """
    batch, tokens = centers.shape[:2]
    n_mask = masked_count(tokens, ratio)
    seed = torch.randint(tokens, (batch,), generator=generator,
                         device=_random_device(generator, centers.device)).to(centers.device)
    seed_xyz = centers[torch.arange(batch, device=centers.device), seed]            # (B, 3)
    dist = (centers - seed_xyz[:, None]).detach().square().sum(-1)                 # (B, G)
    dist[torch.arange(batch, device=centers.device), seed] = -1.0                  # the seed always comes first
    nearest = dist.argsort(dim=1, stable=True)[:, :n_mask]
    mask = torch.zeros(batch, tokens, dtype=torch.bool, device=centers.device)
    return mask.scatter_(1, nearest, True)
