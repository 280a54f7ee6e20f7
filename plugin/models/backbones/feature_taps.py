"""Feature taps: ``(centers, local, global)`` from an unmodified OpenPoints encoder.

A tap runs the encoder's own ``forward_cls_feat`` once and captures its top-level positional
features with a forward hook, so no encoder is forked. Each backbone family registers one tap:

- ``PointNextEncoder``: the centres and features of the last stage that still has several points
  (for classification configs the final stage is a global set abstraction, whose output is the
  global embedding);
- ``DGCNN``: the per-point features of ``fusion_block`` (before max/avg pooling), at the input points.

New backbones add a tap with :func:`register_tap`.
"""
from typing import Callable, Dict, Tuple

import torch
from torch import nn

from ...errors import ConfigError

Tap = Callable[[nn.Module, Dict[str, torch.Tensor]], Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
FEATURE_TAPS: Dict[str, Tap] = {}


def register_tap(*encoder_names: str) -> Callable[[Tap], Tap]:
    """Register a tap for encoder classes named ``encoder_names``."""
    def wrap(fn: Tap) -> Tap:
        for name in encoder_names:
            FEATURE_TAPS[name] = fn
        return fn
    return wrap


def _run_with_hook(encoder: nn.Module, module: nn.Module, data: Dict[str, torch.Tensor]):
    captured = []
    handle = module.register_forward_hook(lambda _m, _inp, out: captured.append(out))
    try:
        global_feat = encoder.forward_cls_feat(data)
    finally:
        handle.remove()
    return captured[-1], global_feat


@register_tap("PointNextEncoder")
def pointnext_tap(encoder: nn.Module, data: Dict[str, torch.Tensor]):
    """Last multi-point stage of PointNeXt: centres (B,L,3), features (B,C,L); global (B,C')."""
    stages = list(encoder.encoder)
    last_local = stages[-2] if len(stages) > 1 and encoder.strides[-1] == 1 else stages[-1]
    (centers, local), global_feat = _run_with_hook(encoder, last_local, data)
    return centers, local, global_feat


@register_tap("DGCNN")
def dgcnn_tap(encoder: nn.Module, data: Dict[str, torch.Tensor]):
    """DGCNN: input points (B,N,3), fused per-point features before pooling (B,C,N); global (B,2C)."""
    local, global_feat = _run_with_hook(encoder, encoder.fusion_block, data)
    return data["pos"], local, global_feat


def tap_features(encoder: nn.Module, data: Dict[str, torch.Tensor]):
    """``(centers (B,L,3), local (B,C,L), global (B,C'))`` of ``encoder`` on ``data`` (``pos``, ``x``).

    Raises:
        ConfigError: the encoder family has no registered tap.
    """
    tap = FEATURE_TAPS.get(type(encoder).__name__)
    if tap is None:
        raise ConfigError(f"No feature tap for encoder {type(encoder).__name__}: set model.encoder_args.NAME to one "
                          f"of {', '.join(sorted(FEATURE_TAPS))}.")
    return tap(encoder, data)
