"""PointViTEncoder (Point-BERT / Point-MAE): tokens, mask modes, padding, gradients, size, tap, BaseCls runs."""
import functools
import json

import pytest
import torch
from openpoints.models import build_model_from_cfg
from openpoints.utils import EasyConfig

import plugin  # noqa: F401
import plugin.models.backbones.point_vit  # noqa: F401  (registers PointViTEncoder and its tap until plugin does)
from plugin.engine import load_config
from plugin.errors import BadInputError, ConfigError
from plugin.models import tap_features
from plugin.models.backbones.masking import block_token_mask, random_token_mask
from plugin.models.backbones.point_tokenizer import PointTokenizer
from plugin.models.backbones.point_vit import PointViTEncoder
from tests.engine.conftest import REPO, main, only_run, tiny_modelnet, tiny_overrides  # noqa: F401  (fixtures)

TINY = dict(embed_dim=32, depth=2, num_heads=2, num_groups=16, group_size=8)
CFG = str(REPO / "cfgs" / "modelnet40" / "pointvit.yaml")


def tiny(**kwargs) -> PointViTEncoder:
    torch.manual_seed(0)
    return PointViTEncoder(**{**TINY, **kwargs})


def clouds(batch: int = 3, points: int = 128, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, points, 3, generator=torch.Generator().manual_seed(seed))


def test_tokenizer_groups_are_knn_of_fps_centres():
    tokenizer = PointTokenizer(16, num_groups=8, group_size=5)
    pos = clouds(2, 64)
    centers, groups = tokenizer.group(pos)
    assert centers.shape == (2, 8, 3) and groups.shape == (2, 8, 5, 3)
    assert torch.equal(centers[:, 0], pos[:, 0])   # FPS starts at point 0
    for b in range(2):
        nearest = torch.cdist(centers[b], pos[b]).topk(5, largest=False).indices   # brute-force kNN
        assert torch.allclose(groups[b] + centers[b][:, None], pos[b][nearest])
    assert tokenizer(pos)[1].shape == (2, 8, 16)


def test_shapes_dict_and_tensor_input():
    encoder = tiny().eval()
    pos = clouds()
    with torch.no_grad():
        out = encoder.forward_tokens(pos)
        feat = encoder.forward_cls_feat({"pos": pos, "x": pos.transpose(1, 2)})
        assert torch.equal(feat, encoder.forward_cls_feat(pos))
    assert encoder.out_channels == 64 and feat.shape == (3, 64)
    assert out.centers.shape == (3, 16, 3) and out.tokens.shape == (3, 16, 32) and out.cls.shape == (3, 32)
    assert out.mask is None and out.valid.all() and torch.equal(out.index[1], torch.arange(16))
    assert torch.equal(feat, torch.cat([out.cls, out.tokens.max(1)[0]], -1))   # [CLS, max over tokens]


def test_replace_mode_keeps_all_tokens_and_uses_the_mask_token():
    encoder = tiny(mask_token=True).eval()
    pos = clouds()
    mask = random_token_mask(3, 16, 0.5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = encoder.forward_tokens(pos, mask, mode="replace")
        plain = encoder.forward_tokens(pos)
        encoder.mask_token.add_(1.0)
        moved = encoder.forward_tokens(pos, mask, mode="replace")
    assert out.tokens.shape == (3, 16, 32) and out.valid.all() and torch.equal(out.mask, mask)
    assert not torch.allclose(out.tokens, plain.tokens)
    assert not torch.allclose(out.tokens, moved.tokens)   # masked tokens are the [MASK] token
    assert torch.equal(out.centers, plain.centers)        # positions are kept


def test_drop_mode_keeps_the_visible_tokens():
    encoder = tiny().eval()
    pos = clouds()
    with torch.no_grad():
        out = encoder.forward_tokens(pos, functools.partial(block_token_mask, ratio=0.75), mode="drop")
    assert out.mask.shape == (3, 16) and (out.mask.sum(1) == 12).all()
    assert out.tokens.shape == (3, 4, 32) and out.valid.all()
    for b in range(3):
        assert torch.equal(out.index[b], (~out.mask[b]).nonzero()[:, 0])


def test_padding_never_changes_visible_outputs():
    encoder = tiny().eval()
    pos = clouds()
    mask = torch.zeros(3, 16, dtype=torch.bool)
    mask[0, :10], mask[1, 3:7], mask[2, ::2] = True, True, True   # 6, 12 and 8 visible tokens
    with torch.no_grad():
        out = encoder.forward_tokens(pos, mask, mode="drop")
        assert out.tokens.shape == (3, 12, 32)
        assert out.valid.sum(1).tolist() == [6, 12, 8]
        for b in range(3):   # each sample alone: no padding, no attention mask
            alone = encoder.forward_tokens(pos[b:b + 1], mask[b:b + 1], mode="drop")
            n = int(out.valid[b].sum())
            assert alone.tokens.shape == (1, n, 32)
            assert torch.allclose(out.tokens[b, :n], alone.tokens[0], atol=1e-5)
            assert torch.allclose(out.cls[b], alone.cls[0], atol=1e-5)
            assert torch.allclose(encoder.global_feature(out)[b], encoder.global_feature(alone)[0], atol=1e-5)


def test_gradients_reach_every_parameter():
    encoder = tiny(mask_token=True, drop_path_rate=0.0).train()
    pos = clouds(4)
    out = encoder.forward_tokens(pos, random_token_mask(4, 16, 0.5), mode="replace")
    weights = torch.randn(out.tokens.shape, generator=torch.Generator().manual_seed(1))
    # random weights: a plain sum of LayerNorm outputs has zero gradient below the norm
    loss = (out.tokens * weights).sum() + (out.cls * weights[:, 0]).sum()
    loss.backward()
    for name, param in encoder.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_parameter_count_matches_point_mae():
    # Point-MAE's encoder (Pang-Yatian/Point-MAE models/Point_MAE.py PointTransformer without cls_head_finetune):
    #   mini-PointNet conv 3-128 (512) + BN (256) + conv 128-256 (33,024) + conv 512-512 (262,656) + BN (1,024)
    #     + conv 512-384 (196,992)                                                  =     494,464
    #   positional MLP 3-128-384                                                    =      50,048
    #   cls token + cls pos                                                         =         768
    #   12 blocks x (2 LayerNorms 1,536 + qkv without bias 442,368 + proj 147,840 + MLP 1,181,568 = 1,773,312)
    #                                                                               =  21,279,744
    #   final LayerNorm                                                             =         768
    #                                                                         total =  21,825,792
    assert sum(p.numel() for p in PointViTEncoder().parameters()) == 21_825_792
    assert sum(p.numel() for p in PointViTEncoder(mask_token=True).parameters()) == 21_825_792 + 384
    # BaseCls + ClsHead 768-256-256-40 as Point-MAE's head, less the two linear biases before BN (512): "22.1M"
    model = build_model_from_cfg(load_config(CFG).model)
    assert sum(p.numel() for p in model.parameters()) == 22_099_240


def test_tap_contract():
    encoder = tiny().eval()
    pos = clouds(2, 256)
    data = {"pos": pos, "x": pos.transpose(1, 2).contiguous()}
    with torch.no_grad():
        centers, local, global_feat = tap_features(encoder, data)
        expected = encoder.forward_cls_feat(data)
    assert centers.shape == (2, 16, 3) and local.shape == (2, 32, 16)
    assert torch.equal(global_feat, expected) and global_feat.shape == (2, encoder.out_channels)
    assert torch.equal(global_feat[:, 32:], local.max(-1)[0])
    assert all(any(torch.equal(c, p) for p in pos[0]) for c in centers[0])   # centres are input points


def test_user_errors():
    encoder = tiny().eval()
    pos = clouds()
    with pytest.raises(ConfigError, match="Unknown mask mode 'bert'"):
        encoder.forward_tokens(pos, mode="bert")
    with pytest.raises(ConfigError, match="encoder_args.mask_token=True"):
        encoder.forward_tokens(pos, random_token_mask(3, 16, 0.5), mode="replace")
    with pytest.raises(BadInputError, match="bool tensor of shape \\(3, 16\\)"):
        encoder.forward_tokens(pos, torch.zeros(3, 8, dtype=torch.bool), mode="drop")
    with pytest.raises(BadInputError, match="at least 16 points per cloud, got 10"):
        encoder.forward_cls_feat(clouds(2, 10))
    with pytest.raises(BadInputError, match="shape \\(B, N, 3\\)"):
        encoder.forward_cls_feat(clouds().transpose(1, 2))
    with pytest.raises(ConfigError, match="not divisible"):
        PointViTEncoder(embed_dim=30, num_heads=4)


def test_base_cls_builds_and_trains(tiny_modelnet, tmp_path, main):
    encoder_keys = [f"model.encoder_args.{key}={value}" for key, value in TINY.items()]
    overrides = [o for o in tiny_overrides(tiny_modelnet, tmp_path, epochs=1) if not o.startswith("model.encoder_args")]
    assert main(["--cfg", CFG, *overrides, *encoder_keys, "warmup_epochs=0"]) == 0
    run = only_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test_oa"] <= 100 and (run / "ckpt_best.pth").is_file()
    model = build_model_from_cfg(EasyConfig(load_config(CFG, overrides + encoder_keys).model))
    assert isinstance(model.encoder, PointViTEncoder) and model.prediction.head[-1][0].in_features == 16
