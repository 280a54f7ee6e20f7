"""Gated Dual-Path Adapter (CLIP2Point Eqs. 12-14): hand-computed values, variants, frozen encoders."""
import math

import pytest
import torch
import torch.nn.functional as F
from openpoints.models import build_model_from_cfg
from openpoints.utils import EasyConfig

import plugin  # noqa: F401  (registers the model)
from plugin.errors import BadInputError, ConfigError
from plugin.models.heads.gdpa import VARIANTS, GatedDualPathAdapter, parse_logit_scale


def identity_adapter(model: GatedDualPathAdapter, name: str) -> None:
    """f1 = f2 = identity, zero biases: the path's g becomes ReLU of its (single) view feature."""
    adapter = getattr(model, name)
    with torch.no_grad():
        for layer in (adapter.f1, adapter.f2):
            layer.weight.copy_(torch.eye(layer.weight.shape[0], layer.weight.shape[1]))
            layer.bias.zero_()


def test_gated_fusion_and_logits_match_a_hand_computation():
    model = GatedDualPathAdapter(num_views=1, feature_dim=2, hidden_dim=2, gate_init=0.5)
    identity_adapter(model, "clip_adapter")
    identity_adapter(model, "depth_adapter")
    model.set_text_features(torch.tensor([[2.0, 0.0], [0.0, 5.0]]))  # normalised to e1, e2
    clip = torch.tensor([[[2.0, -1.0]]])   # g_C = ReLU -> (2, 0)
    depth = torch.tensor([[[-1.0, 3.0]]])  # g_D = ReLU -> (0, 3)
    # G = 0.5 * (2, 0) + (0, 3) = (1, 3); Eq. 14's plain cosine: logits = (1, 3) / sqrt(10)
    assert torch.allclose(model.fuse(depth, clip), torch.tensor([[1.0, 3.0]]))
    expected = torch.tensor([[1 / math.sqrt(10), 3 / math.sqrt(10)]])
    assert torch.allclose(model(depth, clip), expected, atol=1e-6)
    scaled = GatedDualPathAdapter(num_views=1, feature_dim=2, hidden_dim=2, logit_scale=100, num_classes=2)
    scaled.load_state_dict(model.state_dict() | {"logit_scale": torch.tensor(100.0)})
    assert torch.allclose(scaled(depth, clip), 100 * expected, atol=1e-4)  # CLIP's fixed scale, on request


def test_eq12_concatenates_views_before_f1():
    torch.manual_seed(0)
    model = GatedDualPathAdapter(num_views=3, feature_dim=4, hidden_dim=5, variant="dual")
    model.set_text_features(torch.randn(6, 4))
    depth, clip = torch.randn(2, 3, 4), torch.randn(2, 3, 4)

    def g(adapter, x):  # Eq. 12 written out: W2 ReLU(W1 [x_1; x_2; x_3] + b1) + b2
        flat = torch.cat([x[:, v] for v in range(x.shape[1])], dim=1)
        return F.relu(flat @ adapter.f1.weight.T + adapter.f1.bias) @ adapter.f2.weight.T + adapter.f2.bias

    fused = g(model.clip_adapter, clip) + g(model.depth_adapter, depth)
    assert torch.allclose(model.fuse(depth, clip), fused, atol=1e-6)
    text = F.normalize(model.text_features, dim=-1)
    assert torch.allclose(model(depth, clip), F.normalize(fused, dim=-1) @ text.T, atol=1e-6)


def test_inter_view_is_eq4_weighted_per_view_cosines():
    model = GatedDualPathAdapter(num_views=2, feature_dim=2, variant="inter_view")
    with torch.no_grad():
        model.view_residual.weight.zero_()
        model.view_residual.bias.copy_(torch.tensor([0.0, 0.0, 1.0, -1.0]))  # ReLU -> r_1 = 0, r_2 = (1, 0)
    model.set_text_features(torch.eye(2))
    depth = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    # f'_1 = (1, 0) + 0.6 (0, 0) = (1, 0); f'_2 = (0, 2) + 0.6 (1, 0) = (0.6, 2)
    assert torch.allclose(model.adapt_views(depth), torch.tensor([[[1.0, 0.0], [0.6, 2.0]]]))
    cos_2 = torch.tensor([0.6, 2.0]) / math.sqrt(0.6 ** 2 + 4)       # cos(f'_2, e_1), cos(f'_2, e_2)
    # view weights start at 1/V: logits = (cos(f'_1, T) + cos(f'_2, T)) / 2 (Eq. 11's view average)
    torch.testing.assert_close(model(depth), ((torch.tensor([1.0, 0.0]) + cos_2) / 2).unsqueeze(0))
    with torch.no_grad():
        model.view_weights.copy_(torch.tensor([0.25, 2.0]))
    # Eq. 4: logits = sum_v alpha_v cos(f'_v, T); the weights are not renormalised
    torch.testing.assert_close(model(depth), (0.25 * torch.tensor([1.0, 0.0]) + 2.0 * cos_2).unsqueeze(0))
    with pytest.raises(BadInputError, match="adapt_views"):
        model.fuse(depth, None)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_builds_from_the_registry_and_classifies(variant):
    torch.manual_seed(0)
    cfg = EasyConfig({"NAME": "GatedDualPathAdapter", "num_views": 10, "feature_dim": 8, "hidden_dim": 16,
                      "variant": variant, "num_classes": 5})
    model = build_model_from_cfg(cfg)
    model.set_text_features(torch.randn(5, 8))
    depth, clip = torch.randn(4, 10, 8), torch.randn(4, 10, 8)
    logits = model(depth if "depth" in model.paths else None, clip if "clip" in model.paths else None)
    assert logits.shape == (4, 5) and torch.isfinite(logits).all()
    assert logits.abs().max() <= 1 + 1e-5  # plain cosines (Eq. 14), or their 1/V-weighted sum (Eq. 4)
    names = {name.split(".")[0] for name, _ in model.named_parameters()}
    expected = {"gated": {"clip_adapter", "depth_adapter", "gate"}, "dual": {"clip_adapter", "depth_adapter"},
                "depth_only": {"depth_adapter"}, "clip_only": {"clip_adapter"},
                "inter_view": {"depth_adapter", "view_residual", "view_weights"}}[variant]
    assert names == expected
    assert {name for name, _ in model.named_buffers()} == {"logit_scale", "text_features"}


def test_logit_scale_is_plain_cosine_fixed_or_learnable():
    torch.manual_seed(0)
    depth, clip = torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    plain = GatedDualPathAdapter(num_views=2, feature_dim=4, variant="dual")
    plain.set_text_features(torch.randn(5, 4))
    cosine = F.normalize(plain.fuse(depth, clip), dim=-1) @ plain.text_features.T
    torch.testing.assert_close(plain(depth, clip), cosine)                  # Eq. 14: no scale by default
    assert parse_logit_scale(None) == 1.0 and parse_logit_scale(14.3) == 14.3 and parse_logit_scale("learnable") is None
    learnable = GatedDualPathAdapter(num_views=2, feature_dim=4, variant="dual", logit_scale="learnable",
                                     num_classes=5)
    learnable.load_state_dict({k: v for k, v in plain.state_dict().items() if k != "logit_scale"}, strict=False)
    assert "logit_scale" not in dict(learnable.named_buffers())
    torch.testing.assert_close(learnable(depth, clip), cosine)             # starts at s = exp(0) = 1
    loss = F.cross_entropy(learnable(depth, clip), torch.tensor([0, 1, 2]))
    loss.backward()
    assert float(learnable.log_logit_scale.grad.abs()) > 0                  # the scale trains
    for bad in (0, -2.0, "hot"):
        with pytest.raises(ConfigError, match="model.logit_scale"):
            GatedDualPathAdapter(num_views=2, feature_dim=4, logit_scale=bad)


def test_single_path_variants_ignore_the_other_path():
    torch.manual_seed(0)
    depth, clip = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    depth_only = GatedDualPathAdapter(num_views=3, feature_dim=4, variant="depth_only")
    clip_only = GatedDualPathAdapter(num_views=3, feature_dim=4, variant="clip_only")
    assert torch.equal(depth_only.fuse(depth, None), depth_only.fuse(depth, clip))
    assert torch.equal(clip_only.fuse(None, clip), clip_only.fuse(depth, clip))
    assert torch.equal(clip_only.fuse(None, clip), clip_only.clip_adapter(clip))
    assert not hasattr(clip_only, "depth_adapter") and not hasattr(depth_only, "clip_adapter")


def test_gate_scales_only_the_clip_path():
    torch.manual_seed(0)
    model = GatedDualPathAdapter(num_views=2, feature_dim=3, gate_init=0.0)
    depth, clip = torch.randn(2, 2, 3), torch.randn(2, 2, 3)
    assert torch.allclose(model.fuse(depth, clip), model.depth_adapter(depth))
    with torch.no_grad():
        model.gate.fill_(2.0)
    assert torch.allclose(model.fuse(depth, clip), 2 * model.clip_adapter(clip) + model.depth_adapter(depth))


def test_bad_inputs_raise_one_clear_sentence():
    with pytest.raises(ConfigError, match="model.variant"):
        GatedDualPathAdapter(variant="triple")
    model = GatedDualPathAdapter(num_views=2, feature_dim=3)
    with pytest.raises(BadInputError, match="set_text_features"):
        model(torch.randn(1, 2, 3), torch.randn(1, 2, 3))
    model.set_text_features(torch.randn(4, 3))
    with pytest.raises(BadInputError, match=r"expected \(B, 2, 3\)"):
        model(torch.randn(1, 5, 3), torch.randn(1, 5, 3))
    with pytest.raises(BadInputError, match="clip path"):
        model(torch.randn(1, 2, 3), None)
    with pytest.raises(BadInputError, match="feature_dim=3"):
        model.set_text_features(torch.randn(4, 7))


def test_text_features_are_a_fixed_buffer_that_round_trips_in_the_state_dict():
    model = GatedDualPathAdapter(num_views=2, feature_dim=3)
    model.set_text_features(torch.tensor([[3.0, 0.0, 4.0]]))
    assert torch.allclose(model.text_features, torch.tensor([[0.6, 0.0, 0.8]]))
    other = GatedDualPathAdapter(num_views=2, feature_dim=3, num_classes=1)
    other.load_state_dict(model.state_dict())
    assert torch.equal(other.text_features, model.text_features)
    assert not model.text_features.requires_grad


def test_one_training_step_of_the_full_pipeline_updates_only_the_adapters_and_the_gate(tmp_path):
    from plugin.clip import depth_encoder_state, load_clip, trainable_visual_copy
    from plugin.engine.modes.gdpa import encode_paths, frozen_path_encoders
    from plugin.render import DepthRenderer

    torch.manual_seed(0)
    clip = load_clip("tiny-clip-test", None)
    checkpoint = tmp_path / "clip2point.pth"
    depth = trainable_visual_copy(clip)
    with torch.no_grad():
        for p in depth.parameters():
            p.mul_(1.1)
    torch.save(depth_encoder_state(depth), checkpoint)
    encoders = frozen_path_encoders(clip, str(checkpoint), ("clip", "depth"))
    assert encoders["depth"] is not encoders["clip"]
    renderer = DepthRenderer(image_size=clip.image_size, views="orthogonal_corner10", mean=clip.image_mean,
                             std=clip.image_std)
    model = GatedDualPathAdapter(num_views=renderer.num_views, feature_dim=clip.embed_dim, hidden_dim=16)
    model.set_text_features(torch.randn(3, clip.embed_dim))
    points = F.normalize(torch.randn(4, 256, 3), dim=-1)
    frozen = {f"{path}.{name}": p.detach().clone() for path, encoder in encoders.items()
              for name, p in encoder.named_parameters()}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}

    features = encode_paths(points, renderer, encoders)  # no torch.no_grad(): freezing alone must stop gradients
    assert features["depth"].shape == features["clip"].shape == (4, 10, clip.embed_dim)
    assert not torch.allclose(features["depth"], features["clip"])  # two different encoders
    loss = F.cross_entropy(model(**features), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    for path, encoder in encoders.items():
        for name, p in encoder.named_parameters():
            assert p.grad is None or not p.grad.any(), f"{path}.{name}"
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    torch.optim.Adam(model.parameters(), lr=1e-2).step()
    assert all(not torch.equal(before[name], p) for name, p in model.named_parameters())
    assert all(torch.equal(frozen[f"{path}.{name}"], p) for path, encoder in encoders.items()
               for name, p in encoder.named_parameters())
