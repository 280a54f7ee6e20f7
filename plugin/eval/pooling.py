"""One vector per cloud from a feature tap's output: pooled per-point features or the encoder's own embedding."""
from typing import Callable, Dict, Sequence, Tuple, Union

import torch

from ..errors import ConfigError

# name -> f(local (B,C,L), global (B,C')) -> (B, D)
POOLINGS: Dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "global": lambda local, global_feat: global_feat,   # forward_cls_feat: the embedding L_glb aligns (Eq. 3)
    "max": lambda local, global_feat: local.max(dim=-1).values,
    "mean": lambda local, global_feat: local.mean(dim=-1),
}


def parse_pooling(spec: Union[str, Sequence[str]], key: str) -> Tuple[str, ...]:
    """The pooling names of ``spec``: ``"global"``, ``"max"``, ``"max,mean"`` or a list of names.

    Args:
        spec: the configured value.
        key: the config key ``spec`` came from, named in the error message.

    Raises:
        ConfigError: empty, or a name other than those of :data:`POOLINGS`.
    """
    names = spec.split(",") if isinstance(spec, str) else list(spec or [])
    names = tuple(str(name).strip() for name in names)
    if not names or any(name not in POOLINGS for name in names):
        raise ConfigError(f"Unknown pooling '{spec}' in {key}: use global, max, or several of "
                          f"{', '.join(POOLINGS)} joined by commas (e.g. max,mean).")
    return names


def pool_features(local: torch.Tensor, global_feat: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """Concatenate the vectors of ``names`` (:data:`POOLINGS`) for each cloud.

    Args:
        local: (B,C,L) the tap's per-point (per-region) features.
        global_feat: (B,C') the encoder's global embedding (``forward_cls_feat``).
        names: pooling names, in output order.

    Returns:
        (B, D) with D the sum of each name's width (C for ``max``/``mean``, C' for ``global``).
    """
    return torch.cat([POOLINGS[name](local, global_feat) for name in names], dim=1)
