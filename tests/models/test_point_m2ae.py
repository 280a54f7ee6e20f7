"""PointM2AEEncoder (Point-M2AE / I2P-MAE): stage shapes, local attention, multi-scale visibility, padding,
gradients, parameter counts, the feature tap, and a tools/main.py epoch of its classifier."""
import json
from pathlib import Path

import pytest
import torch
from openpoints.models import build_model_from_cfg
from timm.models.vision_transformer import Block

import plugin  # noqa: F401
import plugin.models.backbones.point_m2ae  # noqa: F401  (registers the encoder until plugin imports it)
from plugin.engine import load_config
from plugin.errors import BadInputError, ConfigError
from plugin.models import tap_features
from plugin.models.backbones.masking import block_token_mask, random_token_mask
from plugin.models.backbones.point_m2ae import (PointM2AEEncoder, group_scales, local_attention_mask,
                                                propagate_visibility)
from plugin.models.backbones.point_m2ae_decoder import PointM2AEDecoder

from ..engine.conftest import main, only_run, tiny_modelnet, tiny_overrides  # noqa: F401  (fixtures)

CFGS = Path(__file__).resolve().parents[2] / "cfgs"
TINY = dict(num_tokens=(64, 32, 16), k_neighbors=(8, 4, 4), dims=(16, 32, 64), depths=(1, 1, 1), num_heads=4)


def n_params(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def test_stage_shapes_and_nested_visibility():
    torch.manual_seed(0)
    encoder = PointM2AEEncoder().eval()    # standard: 512/256/64 tokens, 96/192/384 dims, k 16/8/8
    pos = torch.rand(2, 2048, 3)
    with torch.no_grad():
        full = encoder(pos)
        masked = encoder(pos, random_token_mask(2, 64, 0.8))
        global_feat = encoder.forward_cls_feat({"pos": pos})
    for out, tokens, dim in zip(full, (512, 256, 64), (96, 192, 384)):
        assert out.centers.shape == (2, tokens, 3) and out.features.shape == (2, tokens, dim)
        assert out.visible.all()
    assert global_feat.shape == (2, 384) and encoder.out_channels == 384
    assert [int(o.visible[0].sum()) for o in masked][-1] == 13                    # round(0.2 * 64) visible
    for out in masked:                                                            # zeros where nothing was seen
        assert not out.features[~out.visible].any() and out.features[out.visible].abs().sum(-1).gt(0).all()


def brute_force_mask(centers, valid, radius):
    batch, length = valid.shape
    allowed = torch.zeros(batch, 1, length, length, dtype=torch.bool)
    for b in range(batch):
        for i in range(length):
            for j in range(length):
                near = radius <= 0 or float(torch.linalg.vector_norm(centers[b, i] - centers[b, j])) < radius
                allowed[b, 0, i, j] = (bool(valid[b, i]) and bool(valid[b, j]) and near) or i == j
    return allowed


@pytest.mark.parametrize("radius", [0.0, 0.35])
def test_local_attention_equals_brute_force_radius_mask(radius):
    torch.manual_seed(1)
    centers = torch.rand(2, 12, 3)
    valid = torch.arange(12) < torch.tensor([[12], [9]])        # the second sample is padded
    mask = local_attention_mask(centers, valid, radius)
    expected = brute_force_mask(centers, valid, radius)
    assert torch.equal(mask, expected)
    if radius:
        assert 0 < int(expected[0, 0].sum()) < 144                # the radius really cuts pairs
    block = Block(16, 4, qkv_bias=False).eval()
    x = torch.randn(2, 12, 16)
    with torch.no_grad():
        ours = block(x, attn_mask=mask)
        reference = block(x, attn_mask=torch.zeros(expected.shape).masked_fill(~expected, float("-inf")))
    assert torch.isfinite(ours).all()
    assert torch.allclose(ours[valid], reference[valid], atol=1e-6)
    assert local_attention_mask(centers, torch.ones(2, 12, dtype=torch.bool), 0.0) is None


def test_encoder_blocks_get_the_radius_mask_of_their_stage():
    torch.manual_seed(7)
    encoder = PointM2AEEncoder(**{**TINY, "num_tokens": (24, 12, 6)}, local_radius=(0.3, 0.5, 0.0)).eval()
    seen = []
    for stage in encoder.blocks:
        stage[0].register_forward_pre_hook(lambda _m, _args, kwargs: seen.append(kwargs["attn_mask"]),
                                           with_kwargs=True)
    pos = torch.rand(1, 128, 3)
    with torch.no_grad():
        outputs = encoder(pos)
    for out, mask, radius in zip(outputs, seen, (0.3, 0.5, 0.0)):
        if radius:
            assert torch.equal(mask, brute_force_mask(out.centers, out.visible, radius))
        else:
            assert mask is None


def brute_force_visibility(scales, mask):
    visible = [(~mask).tolist()]
    for coarse, fine in zip(reversed(scales[1:]), reversed(scales[:-1])):
        batch, tokens = fine.centers.shape[:2]
        finer = [[False] * tokens for _ in range(batch)]
        for b in range(batch):
            for t, seen in enumerate(visible[0][b]):
                if seen:
                    for j in coarse.neighbours[b, t].tolist():
                        finer[b][j] = True
        visible.insert(0, finer)
    return [torch.tensor(v) for v in visible]


def test_visibility_propagation_equals_brute_force_union():
    torch.manual_seed(2)
    scales = group_scales(torch.rand(3, 256, 3), (64, 32, 16), (8, 4, 4))
    for mask in (random_token_mask(3, 16, 0.75), block_token_mask(scales[-1].centers, 0.5)):
        ours = propagate_visibility(scales, mask)
        assert all(torch.equal(a, b) for a, b in zip(ours, brute_force_visibility(scales, mask)))
        assert all(0 < int(v.sum(1).min()) and int(v.sum(1).max()) < v.shape[1] for v in ours)


def test_no_token_is_visible_without_a_visible_coarse_token():
    """The upstream defect: Point-M2AE zeroes the neighbour indices of masked coarse tokens and scatters 'visible'
    through them into the flattened finer scale, so flat index 0 (sample 0, token 0) is always marked visible."""
    torch.manual_seed(3)
    scales = group_scales(torch.rand(2, 256, 3), (64, 32, 16), (8, 4, 4))
    coarse = scales[-1].neighbours                                         # (2, 16, 4) into the 32-token scale
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0] = (coarse[0] == 0).any(dim=1)                                  # hide every coarse token reaching 0
    assert mask[0].any() and not mask[0].all()
    visible = propagate_visibility(scales, mask)
    assert not visible[1][0, 0]                                            # ours: token 0 stays hidden
    assert torch.equal(visible[1], brute_force_visibility(scales, mask)[1])
    flat = (~mask).reshape(-1, 1) * (coarse + 32 * torch.arange(2).view(2, 1, 1)).reshape(32, -1)
    upstream = torch.zeros(64, dtype=torch.bool).scatter(0, flat.reshape(-1), True).view(2, 32)
    assert upstream[0, 0]                                                  # the defect the test guards against


def test_bad_masks_are_one_sentence_errors():
    encoder, pos = PointM2AEEncoder(**TINY), torch.rand(2, 128, 3)
    with pytest.raises(BadInputError, match="shape"):
        encoder(pos, torch.zeros(2, 8, dtype=torch.bool))
    with pytest.raises(BadInputError, match="at least one token visible"):
        encoder(pos, torch.ones(2, 16, dtype=torch.bool))
    with pytest.raises(ConfigError, match="in_channels to 3"):
        PointM2AEEncoder(in_channels=4)
    with pytest.raises(ConfigError, match="num_heads"):
        PointM2AEEncoder(num_heads=5)
    with pytest.raises(ConfigError, match="model.decoder_args.num_heads to a common divisor"):
        PointM2AEDecoder(encoder_dims=(32, 64, 128), dims=(128, 64), num_heads=6)


def test_padding_never_changes_visible_outputs():
    torch.manual_seed(4)
    encoder = PointM2AEEncoder(num_tokens=(128, 64, 32), k_neighbors=(16, 8, 8), dims=(32, 64, 128),
                               depths=(2, 2, 2), num_heads=4, local_radius=(0.3, 0.5, 0.0)).eval()
    pos = torch.rand(3, 512, 3)
    mask = random_token_mask(3, 32, 0.7, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        batched = encoder(pos, mask)
        alone = [encoder(pos[b:b + 1], mask[b:b + 1]) for b in range(3)]
    counts = [o.visible.sum(1) for o in batched]
    assert any(int(c.max()) > int(c.min()) for c in counts)               # some samples are padded
    for b in range(3):
        for ours, single in zip(batched, alone[b]):
            assert torch.equal(ours.visible[b], single.visible[0])
            assert torch.allclose(ours.features[b], single.features[0], atol=1e-5)
        assert torch.allclose(encoder.pool(batched[-1])[b], encoder.pool(alone[b][-1])[0], atol=1e-5)


def test_gradients_reach_every_trainable_parameter():
    torch.manual_seed(5)
    encoder = PointM2AEEncoder(**TINY, drop_path_rate=0.0, local_radius=(0.3, 0.5, 0.0))
    decoder = PointM2AEDecoder(encoder_dims=(16, 32, 64), dims=(64, 32), num_heads=4, drop_path_rate=0.0)
    pos = torch.rand(2, 128, 3)
    feat = encoder.forward_cls_feat({"pos": pos})                          # fine-tuning path: encoder only
    (feat * torch.randn_like(feat)).sum().backward()
    missing = [name for name, p in encoder.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, missing
    encoder.zero_grad(set_to_none=True)
    decoded = decoder(encoder(pos, random_token_mask(2, 16, 0.6)))        # pre-training path
    assert decoded.shape == (2, 32, 32)
    (decoded * torch.randn_like(decoded)).sum().backward()
    params = list(encoder.named_parameters()) + [("decoder." + n, p) for n, p in decoder.named_parameters()]
    missing = [name for name, p in params if p.grad is None or not p.grad.any()]
    assert not missing, missing


def test_parameter_counts():
    """Encoder 12,654,400: Point-M2AE's H_Encoder of the official code counts 12,653,632 (token embedding 810,976,
    positional MLPs 196,896, 15 blocks 11,645,760), plus the final LayerNorm (768) that its classifiers apply; its
    pre-training encoder holds one LayerNorm per stage instead (12,654,976). The papers' 12.9M is the ScanObjectNN
    classifier (12,921,935 officially; ours drops the 512 biases before BatchNorm in the head)."""
    with torch.device("meta"):   # shapes only: no memory, no initialisation time
        encoder = PointM2AEEncoder()
        counts = {cfg: n_params(build_model_from_cfg(load_config(str(CFGS / cfg)).model))
                  for cfg in ("modelnet40/pointm2ae.yaml", "scanobjectnn/pointm2ae.yaml")}
        # I2P-MAE pre-training without the 2D teacher: encoder + decoder (64 -> 256 tokens) + the 3D head (8 points
        # x 3 coordinates per 256-scale token) + the 2D-semantic head (8 points x 3 views x 512 CLIP channels)
        decoder = PointM2AEDecoder()
        heads = torch.nn.Conv1d(192, 8 * 3, 1), torch.nn.Conv1d(192, 8 * 3 * 512, 1)
    assert n_params(encoder) == 12_654_400
    assert counts == {"modelnet40/pointm2ae.yaml": 12_829_544, "scanobjectnn/pointm2ae.yaml": 12_921_423}
    assert n_params(decoder) == 2_592_000
    assert n_params(encoder, decoder, *heads) == 17_622_616


def test_tap_contract():
    torch.manual_seed(6)
    encoder = PointM2AEEncoder(**TINY, global_pool="mean,max").eval()
    pos = torch.rand(2, 128, 3)
    data = {"pos": pos, "x": pos.transpose(1, 2).contiguous()}
    with torch.no_grad():
        centers, local, global_feat = tap_features(encoder, data)
        expected = encoder.forward_cls_feat(data)
    assert centers.shape == (2, 16, 3) and local.shape == (2, 64, 16)
    assert torch.equal(global_feat, expected) and global_feat.shape == (2, encoder.out_channels) == (2, 128)
    assert torch.allclose(global_feat, torch.cat([local.mean(-1), local.amax(-1)], 1), atol=1e-6)
    assert all(any(torch.equal(c, p) for p in pos[0]) for c in centers[0])   # FPS centres are input points


def test_classifier_trains_one_epoch_with_main(tiny_modelnet, tmp_path, main):
    cfg = str(CFGS / "modelnet40" / "pointm2ae.yaml")
    overrides = [o for o in tiny_overrides(tiny_modelnet, tmp_path, epochs=1) if not o.startswith("model.")]
    overrides += ["model.encoder_args.num_tokens=[64,32,16]", "model.encoder_args.k_neighbors=[8,4,4]",
                  "model.encoder_args.dims=[16,32,64]", "model.encoder_args.depths=[1,1,1]",
                  "model.encoder_args.num_heads=4", "model.cls_args.num_classes=3", "model.cls_args.mlps=[16,16]",
                  "warmup_epochs=0"]
    assert main(["--cfg", cfg, *overrides]) == 0
    metrics = json.loads((only_run(tmp_path) / "metrics.json").read_text())
    assert 0.0 <= metrics["test_oa"] <= 100.0, metrics
