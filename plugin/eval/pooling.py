"""Pooling of per-point encoder features (B,C,L) into one vector per cloud."""
from typing import Callable, Dict, Sequence, Tuple, Union

import torch

from ..errors import ConfigError

POOLINGS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "max": lambda local: local.max(dim=-1).values,
    "mean": lambda local: local.mean(dim=-1),
}


def parse_pooling(spec: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """The pooling names of ``spec``: ``"max"``, ``"max,mean"`` or a list of names.

    Raises:
        ConfigError: empty, or a name other than those of :data:`POOLINGS`.
    """
    names = spec.split(",") if isinstance(spec, str) else list(spec or [])
    names = tuple(str(name).strip() for name in names)
    if not names or any(name not in POOLINGS for name in names):
        raise ConfigError(f"Unknown pooling '{spec}' in svm.pooling: use max, or several of "
                          f"{', '.join(POOLINGS)} joined by commas (e.g. max,mean).")
    return names


def pool_local(local: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """Pool ``local`` (B,C,L) over its L points with each of ``names``; returns (B, len(names)*C)."""
    return torch.cat([POOLINGS[name](local) for name in names], dim=1)
