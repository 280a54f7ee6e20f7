"""Feature taps return the encoder's own intermediate features without changing its output."""
from pathlib import Path

import pytest
import torch
from openpoints.models import build_model_from_cfg

import plugin  # noqa: F401
from plugin.engine import load_config
from plugin.errors import ConfigError
from plugin.models import tap_features

CFGS = Path(__file__).resolve().parents[2] / "cfgs"


@pytest.mark.parametrize("cfg_file, local_shape, global_dim", [
    ("modelnet40/pointnext-s.yaml", (2, 512, 64), 512),   # 1024 points / 16 after four stride-2 stages
    ("modelnet40/dgcnn.yaml", (2, 1024, 256), 2048),       # fused per-point features, max+avg pooled
])
def test_taps_match_encoder(cfg_file, local_shape, global_dim):
    torch.manual_seed(0)
    encoder = build_model_from_cfg(load_config(str(CFGS / cfg_file)).model.encoder_args).eval()
    pos = torch.rand(2, 256 if "dgcnn" in cfg_file else 1024, 3)
    data = {"pos": pos, "x": pos.transpose(1, 2).contiguous()}
    with torch.no_grad():
        centers, local, global_feat = tap_features(encoder, data)
        expected_global = encoder.forward_cls_feat(data)
    assert torch.equal(global_feat, expected_global) and global_feat.shape == (2, global_dim)
    n_local = local_shape[2] if "pointnext" in cfg_file else 256
    assert local.shape == (2, local_shape[1], n_local) and centers.shape == (2, n_local, 3)
    if "dgcnn" in cfg_file:   # DGCNN pools max and mean of exactly these per-point features
        assert torch.allclose(global_feat, torch.cat([local.max(-1)[0], local.mean(-1)], 1), atol=1e-6)
    else:                     # PointNeXt centres are a subset of the input points
        assert all(any(torch.equal(c, p) for p in pos[0]) for c in centers[0][:5])


def test_unknown_encoder_family():
    with pytest.raises(ConfigError, match="No feature tap for encoder Linear"):
        tap_features(torch.nn.Linear(3, 3), {})
