"""Published checkpoints (Point-BERT, Point-MAE, ULIP, Point-M2AE, I2P-MAE) renamed onto our encoders.

The upstream state dicts are synthetic: key names and shapes written down from the authors' code (cited at
each builder), filled with random tensors. A functional re-implementation of the upstream forwards, reading
the upstream keys, checks that the renamed weights compute the published encoders.
"""
import argparse
import json
import logging
import re
from typing import Dict, Tuple

import pytest
import torch
import torch.nn.functional as F

import plugin  # noqa: F401
from plugin.engine.encoder_weights import load_encoder_state, load_into_encoder
from plugin.errors import BadCheckpointError, ConfigError
from plugin.models.backbones.point_m2ae import PointM2AEEncoder
from plugin.models.backbones.point_vit import PointViTEncoder
from plugin.models.backbones.published_weights import (LAYOUTS, convert_published, load_converted, load_published,
                                                       squeeze_kernel)
from tests.engine.conftest import (REPO, encoder_at_first_step, main, only_run,  # noqa: F401  (fixtures)
                                   tiny_modelnet, tiny_overrides)

VIT = dict(embed_dim=32, depth=2, num_heads=2, num_groups=16, group_size=8)
M2AE = dict(num_tokens=(64, 32, 16), k_neighbors=(8, 4, 4), dims=(16, 32, 64), depths=(2, 1, 1), num_heads=4)
C, DEPTH, BERT_WIDTH = VIT["embed_dim"], VIT["depth"], 256
Shapes = Dict[str, Tuple[int, ...]]


# ---- upstream key names and shapes --------------------------------------------------------------------------

def batch_norm(prefix: str, c: int) -> Shapes:
    """nn.BatchNorm1d(c)."""
    return {f"{prefix}{name}": (c,) for name in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}num_batches_tracked": ()}


def linear(prefix: str, c_in: int, c_out: int, bias: bool = True) -> Shapes:
    return {f"{prefix}weight": (c_out, c_in)} | ({f"{prefix}bias": (c_out,)} if bias else {})


def layer_norm(prefix: str, c: int) -> Shapes:
    return {f"{prefix}weight": (c,), f"{prefix}bias": (c,)}


def conv_bn_conv(prefix: str, c_in: int, hidden: int, c_out: int) -> Shapes:
    """nn.Sequential(Conv1d(c_in, hidden, 1), BatchNorm1d(hidden), ReLU, Conv1d(hidden, c_out, 1))."""
    return ({f"{prefix}0.weight": (hidden, c_in, 1), f"{prefix}0.bias": (hidden,)} | batch_norm(f"{prefix}1.", hidden)
            | {f"{prefix}3.weight": (c_out, hidden, 1), f"{prefix}3.bias": (c_out,)})


def group_embedding(prefix: str, c_in: int, first: Tuple[int, int], second: Tuple[int, int]) -> Shapes:
    """Point-BERT/Point-MAE ``Encoder`` (Point-MAE models/Point_MAE.py, Point-BERT models/dvae.py) and Point-M2AE's
    ``Token_Embed`` (Point-M2AE models/modules.py): first_conv, max, concat, second_conv, max."""
    return conv_bn_conv(prefix + "first_conv.", c_in, *first) | conv_bn_conv(prefix + "second_conv.", 2 * first[1],
                                                                             *second)


def position_mlp(prefix: str, hidden: int, c: int) -> Shapes:
    """nn.Sequential(Linear(3, hidden), GELU, Linear(hidden, c))."""
    return linear(prefix + "0.", 3, hidden) | linear(prefix + "2.", hidden, c)


def vit_blocks(prefix: str, dim: int, depth: int) -> Shapes:
    """``Block`` of Point-MAE models/Point_MAE.py (the same in Point-BERT, ULIP and Point-M2AE): qkv without bias."""
    shapes: Shapes = {}
    for i in range(depth):
        p = f"{prefix}{i}."
        shapes |= (layer_norm(p + "norm1.", dim) | linear(p + "attn.qkv.", dim, 3 * dim, bias=False)
                   | linear(p + "attn.proj.", dim, dim) | layer_norm(p + "norm2.", dim)
                   | linear(p + "mlp.fc1.", dim, 4 * dim) | linear(p + "mlp.fc2.", 4 * dim, dim))
    return shapes


def point_transformer(prefix: str, group_width: int) -> Shapes:
    """Group embedding, positions, blocks and norm of Point-MAE's ``MaskTransformer`` / ``PointTransformer``."""
    return (group_embedding(prefix + "encoder.", 3, (128, 256), (512, group_width))
            | position_mlp(prefix + "pos_embed.", 128, C) | vit_blocks(prefix + "blocks.blocks.", C, DEPTH)
            | layer_norm(prefix + "norm.", C))


def tokens(prefix: str, *names: str) -> Shapes:
    return {prefix + name: (1, 1, C) for name in names}


def point_mae_pretrain() -> Shapes:
    """Pang-Yatian/Point-MAE models/Point_MAE.py ``Point_MAE``: MAE_encoder, mask_token, decoder, increase_dim."""
    return (point_transformer("MAE_encoder.", C) | tokens("", "mask_token") | position_mlp("decoder_pos_embed.", 128, C)
            | vit_blocks("MAE_decoder.blocks.", C, 1) | layer_norm("MAE_decoder.norm.", C)
            | {"increase_dim.0.weight": (3 * VIT["group_size"], C, 1), "increase_dim.0.bias": (3 * VIT["group_size"],)})


def point_mae() -> Shapes:
    """Point-MAE models/Point_MAE.py ``PointTransformer`` (fine-tuned): CLS tokens, encoder, cls_head_finetune."""
    return (tokens("", "cls_token", "cls_pos") | point_transformer("", C) | linear("cls_head_finetune.0.", 2 * C, 256)
            | batch_norm("cls_head_finetune.1.", 256) | linear("cls_head_finetune.4.", 256, 256)
            | batch_norm("cls_head_finetune.5.", 256) | linear("cls_head_finetune.8.", 256, 40))


def bert_query(prefix: str) -> Shapes:
    """Point-BERT models/Point_BERT.py ``MaskTransformer``: 256-wide groups, reduce_dim, tokens, lm_head, cls_head."""
    return (point_transformer(prefix, BERT_WIDTH) | linear(prefix + "reduce_dim.", BERT_WIDTH, C)
            | tokens(prefix, "cls_token", "mask_token", "cls_pos") | linear(prefix + "lm_head.", C, 64)
            | linear(prefix + "cls_head.0.", C, 16) | linear(prefix + "cls_head.2.", 16, 16))


def point_bert_pretrain() -> Shapes:
    """Point-BERT models/Point_BERT.py ``Point_BERT``: transformer_q, its momentum copy transformer_k, the dVAE
    (models/dvae.py, two of its tensors), the MoCo queue."""
    return (bert_query("transformer_q.") | bert_query("transformer_k.")
            | {"dvae.codebook": (64, 256), "dvae.encoder.first_conv.0.weight": (128, 3, 1), "queue": (16, 32),
               "queue_ptr": (1,)})


def point_bert() -> Shapes:
    """Point-BERT models/Point_BERT.py ``PointTransformer`` (fine-tuned)."""
    return (tokens("", "cls_token", "cls_pos") | point_transformer("", BERT_WIDTH)
            | linear("reduce_dim.", BERT_WIDTH, C) | linear("cls_head_finetune.0.", 2 * C, 256)
            | linear("cls_head_finetune.3.", 256, 40))


def ulip_pointbert() -> Shapes:
    """salesforce/ULIP models/ULIP_models.py ``ULIP_WITH_IMAGE`` with models/pointbert/point_encoder.py
    ``PointTransformer`` as ``point_encoder`` (a few tensors of the SLIP image and text towers)."""
    return (point_transformer("point_encoder.", BERT_WIDTH) | linear("point_encoder.reduce_dim.", BERT_WIDTH, C)
            | tokens("point_encoder.", "cls_token", "cls_pos")
            | {"pc_projection": (2 * C, 512), "logit_scale": (), "visual.cls_token": (1, 1, 768),
               "visual.patch_embed.proj.weight": (768, 3, 16, 16), "transformer.resblocks.0.attn.in_proj_weight":
               (1536, 512), "token_embedding.weight": (49408, 8), "positional_embedding": (77, 512),
               "image_projection": (768, 512), "text_projection": (512, 512)} | layer_norm("ln_final.", 512))


def h_encoder(norms: bool) -> Shapes:
    """Point-M2AE models/Point_M2AE.py ``H_Encoder`` (I2P-MAE models/I2P_MAE.py is the same); the fine-tuning
    copies (models/*_Finetune.py) have no encoder_norms."""
    dims, shapes = M2AE["dims"], {}
    for i, (dim, depth) in enumerate(zip(dims, M2AE["depths"])):
        first, second = ((128, 256), (512, dim)) if i == 0 else ((dims[i - 1],) * 2, (dim, dim))
        shapes |= (group_embedding(f"h_encoder.token_embed.{i}.", 3 if i == 0 else dims[i - 1], first, second)
                   | position_mlp(f"h_encoder.encoder_pos_embeds.{i}.", dim, dim)
                   | vit_blocks(f"h_encoder.encoder_blocks.{i}.blocks.", dim, depth))
        shapes |= layer_norm(f"h_encoder.encoder_norms.{i}.", dim) if norms else {}
    return shapes


def m2ae_decoder() -> Shapes:
    """Point-M2AE ``Point_M2AE``'s decoder side: mask_token, h_decoder, decoder_pos_embeds, token_prop, decoder_norm."""
    dec = (64, 32)
    shapes = {"mask_token": (1, dec[0])} | layer_norm("decoder_norm.", dec[-1])
    for i, dim in enumerate(dec):
        shapes |= vit_blocks(f"h_decoder.{i}.blocks.", dim, 1) | position_mlp(f"decoder_pos_embeds.{i}.", dim, dim)
    shapes |= {"token_prop.0.fuse.net.0.weight": (32, 96, 1), "token_prop.0.fuse.net.0.bias": (32,)}
    return shapes | batch_norm("token_prop.0.fuse.net.1.", 32)


def m2ae_pretrain() -> Shapes:
    return h_encoder(True) | m2ae_decoder() | {"rec_head.weight": (48, 32, 1), "rec_head.bias": (48,)}


def i2p_mae_pretrain() -> Shapes:
    """ZrrSkywalker/I2P-MAE models/I2P_MAE.py ``I2P_MAE``: Point-M2AE's, two heads and the frozen CLIP."""
    return (h_encoder(True) | m2ae_decoder()
            | {"rec_head_3d.weight": (24, 32, 1), "rec_head_3d.bias": (24,), "rec_head_2d.weight": (96, 32, 1),
               "rec_head_2d.bias": (96,), "clip_model.visual.conv1.weight": (768, 3, 16, 16),
               "clip_model.positional_embedding": (77, 512)})


def m2ae() -> Shapes:
    """Point-M2AE models/Point_M2AE_Finetune.py ``Point_M2AE_ModelNet40``: h_encoder, norm, cls_head_finetune."""
    return (h_encoder(False) | layer_norm("norm.", M2AE["dims"][-1]) | linear("cls_head_finetune.0.", 64, 256)
            | batch_norm("cls_head_finetune.1.", 256) | linear("cls_head_finetune.8.", 256, 40))


def fill(shapes: Shapes, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random tensors of ``shapes``: fan-in scaled weights, positive norm scales and variances, counters."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked") or key == "queue_ptr":
            state[key] = torch.randint(1, 100, shape, generator=g)
        elif key.endswith("running_var") or (len(shape) == 1 and re.search(r"(norm\w*|\.1)\.weight$", key)):
            state[key] = 0.5 + torch.rand(shape, generator=g)
        elif len(shape) >= 2 and key.endswith("weight"):
            state[key] = torch.randn(shape, generator=g) * (shape[1] * (shape[2] if len(shape) > 2 else 1)) ** -0.5
        else:
            state[key] = 0.3 * torch.randn(shape, generator=g)
    return state


def vit(mask_token: bool = False) -> PointViTEncoder:
    torch.manual_seed(1)
    return PointViTEncoder(**VIT, mask_token=mask_token)


def bert_like() -> PointViTEncoder:
    """Point-BERT's and ULIP's encoder: a 256-wide group embedding projected by ``reduce_dim`` (``group_dim``)."""
    torch.manual_seed(1)
    return PointViTEncoder(**VIT, mask_token=True, group_dim=BERT_WIDTH)


def m2ae_encoder(**kwargs) -> PointM2AEEncoder:
    torch.manual_seed(1)
    return PointM2AEEncoder(**M2AE, **kwargs)


# case -> (layout, upstream shapes, encoder factory, prefix of the transformer's keys, container)
CASES = {
    "point_mae_pretrain": ("point_mae_pretrain", point_mae_pretrain, vit, "MAE_encoder.", "base_model"),
    "point_mae": ("point_mae", point_mae, vit, "", "base_model"),
    "point_bert_pretrain": ("point_bert_pretrain", point_bert_pretrain, bert_like, "transformer_q.", "base_model"),
    "point_bert": ("point_bert", point_bert, bert_like, "", "base_model"),
    "ulip_pointbert": ("ulip_pointbert", ulip_pointbert, bert_like, "point_encoder.", "state_dict"),
    "m2ae_pretrain": ("m2ae_pretrain", m2ae_pretrain, m2ae_encoder, "", "base_model"),
    "i2p_mae_pretrain": ("m2ae_pretrain", i2p_mae_pretrain, m2ae_encoder, "", "base_model"),
    "m2ae": ("m2ae", m2ae, m2ae_encoder, "", "base_model"),
}


def checkpoint(case: str, wrapper: str = "module.") -> Tuple[dict, Dict[str, torch.Tensor]]:
    """The case's checkpoint dict as its repository saves it (state dict under its container, DataParallel
    prefix) and the upstream state dict without the prefix."""
    _, shapes, _, _, container = CASES[case]
    state = fill(shapes())
    return {container: {wrapper + k: v for k, v in state.items()}, "epoch": 300, "optimizer": {}}, state


# ---- mapping and loading --------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_every_layout_loads_strictly_into_its_encoder(case):
    layout, _, factory, prefix, _ = CASES[case]
    ckpt, up = checkpoint(case)
    state, report = convert_published(ckpt)                          # auto-detected
    assert report.layout == layout and report.unexpected == []
    encoder = factory()
    initial = {k: v.clone() for k, v in encoder.state_dict().items()}
    done = load_converted(encoder, state, report, f"{case}.pth")     # strict
    ours = encoder.state_dict()
    assert sorted(done.loaded + done.kept) == sorted(ours) and done.missing == done.unexpected == []
    assert len(done.loaded) + len(done.ignored) == len(up)           # every upstream tensor: loaded or ignored
    for key in done.kept:
        assert torch.equal(ours[key], initial[key]), key
    if isinstance(encoder, PointM2AEEncoder):
        spots = {"token_embed.0.first.0.weight": up["h_encoder.token_embed.0.first_conv.0.weight"][..., 0],
                 "token_embed.1.second.0.weight": up["h_encoder.token_embed.1.second_conv.0.weight"][..., 0],
                 "token_embed.2.first.1.running_var": up["h_encoder.token_embed.2.first_conv.1.running_var"],
                 "token_embed.1.second.1.num_batches_tracked":
                     up["h_encoder.token_embed.1.second_conv.1.num_batches_tracked"],
                 "pos_embed.2.2.weight": up["h_encoder.encoder_pos_embeds.2.2.weight"],
                 "blocks.0.1.attn.qkv.weight": up["h_encoder.encoder_blocks.0.blocks.1.attn.qkv.weight"],
                 "blocks.2.0.mlp.fc2.bias": up["h_encoder.encoder_blocks.2.blocks.0.mlp.fc2.bias"],
                 "norm.weight": up["h_encoder.encoder_norms.2.weight" if "pretrain" in case else "norm.weight"]}
        assert {"h_encoder.encoder_norms.0.weight", "h_encoder.encoder_norms.1.bias"} <= set(done.ignored) or \
            case == "m2ae"
    else:
        spots = {"tokenizer.encoder.first.0.weight": up[prefix + "encoder.first_conv.0.weight"][..., 0],
                 "tokenizer.encoder.second.3.weight": up[prefix + "encoder.second_conv.3.weight"].squeeze(-1),
                 "tokenizer.encoder.second.1.running_mean": up[prefix + "encoder.second_conv.1.running_mean"],
                 "tokenizer.encoder.first.1.num_batches_tracked":
                     up[prefix + "encoder.first_conv.1.num_batches_tracked"],
                 "pos_embed.0.weight": up[prefix + "pos_embed.0.weight"],
                 "blocks.1.attn.qkv.weight": up[prefix + "blocks.blocks.1.attn.qkv.weight"],
                 "blocks.0.mlp.fc1.bias": up[prefix + "blocks.blocks.0.mlp.fc1.bias"],
                 "norm.bias": up[prefix + "norm.bias"]}
        if "cls_token" not in done.kept:
            spots["cls_pos"] = up[prefix + "cls_pos"].reshape(-1)
        if "project" in dict(encoder.tokenizer.named_children()):
            spots["tokenizer.project.weight"] = up[prefix + "reduce_dim.weight"]
    for key, value in spots.items():
        assert ours[key].dtype == value.dtype and torch.equal(ours[key], value), key


@pytest.mark.parametrize("case, ignored", [
    ("point_mae_pretrain", {"mask_token", "MAE_decoder.norm.weight", "increase_dim.0.weight"}),
    ("point_mae", {"cls_head_finetune.8.weight", "cls_head_finetune.1.running_var"}),
    ("point_bert_pretrain", {"transformer_k.cls_token", "transformer_q.lm_head.weight", "dvae.codebook", "queue",
                             "queue_ptr", "transformer_q.cls_head.2.bias"}),
    ("ulip_pointbert", {"pc_projection", "logit_scale", "visual.cls_token", "text_projection", "ln_final.bias"}),
    ("m2ae_pretrain", {"mask_token", "h_decoder.1.blocks.0.attn.qkv.weight", "token_prop.0.fuse.net.1.running_var",
                       "rec_head.weight", "h_encoder.encoder_norms.1.weight", "decoder_norm.bias"}),
    ("i2p_mae_pretrain", {"clip_model.visual.conv1.weight", "rec_head_2d.weight", "rec_head_3d.bias"}),
    ("m2ae", {"cls_head_finetune.0.weight"}),
])
def test_dropped_keys_are_reported_as_ignored(case, ignored):
    _, report = convert_published(checkpoint(case)[0])
    assert ignored <= set(report.ignored) and report.unexpected == []
    assert not any(k.startswith(("MAE_encoder.", "transformer_q.encoder", "point_encoder.")) for k in report.ignored)


def test_mask_token_is_optional_and_point_mae_pretraining_keeps_cls_tokens():
    ckpt, up = checkpoint("point_bert_pretrain")
    state, report = convert_published(ckpt)
    encoder = bert_like()
    load_converted(encoder, state, report, "bert.pth")
    assert torch.equal(encoder.mask_token, up["transformer_q.mask_token"].reshape(-1))
    plain = bert_like()
    plain.mask_token = None
    done = load_converted(plain, state, report, "bert.pth")
    assert "transformer_q.mask_token" in done.ignored and done.unexpected == []
    done = load_converted(vit(), *convert_published(checkpoint("point_mae_pretrain")[0]), "mae.pth")
    assert done.kept == ["cls_token", "cls_pos"]
    assert "kept at initialisation: cls_token, cls_pos" in done.summary()
    done = load_converted(vit(mask_token=True), *convert_published(checkpoint("point_mae")[0]), "mae.pth")
    assert done.kept == ["mask_token"] and done.missing == []


def test_wrappers_and_containers_are_stripped():
    _, up = checkpoint("point_mae")
    reference, _ = convert_published(up)                              # a bare state dict
    for ckpt in ({"base_model": {f"module.{k}": v for k, v in up.items()}},
                 {"model": {f"module.base_model.{k}": v for k, v in up.items()}},
                 {f"module.{k}": v for k, v in up.items()}):
        state, report = convert_published(ckpt)
        assert report.layout == "point_mae" and state.keys() == reference.keys()
        assert all(torch.equal(state[k], reference[k]) for k in state)


def test_auto_detection_and_its_errors():
    for case, (layout, *_) in CASES.items():
        assert convert_published(checkpoint(case)[0])[1].layout == layout
    ours = {"tokenizer.encoder.first.0.weight": torch.zeros(2, 3)}
    with pytest.raises(BadCheckpointError) as err:
        convert_published(ours)
    message = str(err.value)
    assert message.startswith("The checkpoint's keys (first: tokenizer.encoder.first.0.weight) match none of the "
                              "published layouts: point_mae_pretrain (Point-MAE pre-training (Point_MAE)), ")
    assert all(name in message for name in LAYOUTS) and message.count(". ") == 0
    with pytest.raises(ConfigError, match="Unknown checkpoint layout 'pointmae': use auto or one of point_mae_pre"):
        convert_published(checkpoint("point_mae")[0], "pointmae")
    # an explicit layout that does not fit: all but the final norm is unexpected
    _, report = convert_published(checkpoint("point_mae")[0], "m2ae")
    assert set(report.sources) == {"norm.weight", "norm.bias"} and "encoder.first_conv.0.weight" in report.unexpected


def test_strict_refuses_missing_keys_in_one_sentence(caplog):
    ckpt, _ = checkpoint("point_mae_pretrain")
    del ckpt["base_model"]["module.MAE_encoder.blocks.blocks.1.attn.qkv.weight"]
    del ckpt["base_model"]["module.MAE_encoder.encoder.second_conv.1.running_var"]
    state, report = convert_published(ckpt)
    encoder = vit()
    n = len(encoder.state_dict())
    with pytest.raises(ConfigError) as err:
        load_converted(encoder, state, report, "mae.pth")
    assert str(err.value) == (
        f"Checkpoint 'mae.pth' (Point-MAE pre-training (Point_MAE)) lacks 2 of the encoder's {n} tensors (first: "
        "tokenizer.encoder.second.1.running_var, blocks.1.attn.qkv.weight): set encoder_args to the checkpoint's "
        "configuration, or load with strict=False to skip them.")
    with caplog.at_level(logging.WARNING, logger="plugin"):
        done = load_converted(encoder, state, report, "mae.pth", strict=False)
    assert done.missing == ["tokenizer.encoder.second.1.running_var", "blocks.1.attn.qkv.weight"]
    assert len(done.loaded) == n - 4 and "partial load of 'mae.pth'" in caplog.text and "missing:" in caplog.text


def test_strict_refuses_unused_tensors_and_other_shapes():
    state, report = convert_published(checkpoint("point_mae")[0])
    shallow = PointViTEncoder(**{**VIT, "depth": 1})
    with pytest.raises(ConfigError, match=r"holds 11 tensors the encoder has no place for \(first: "
                                          r"blocks\.blocks\.1\.norm1\.weight, "):
        load_converted(shallow, state, report, "mae.pth")
    done = load_converted(shallow, state, report, "mae.pth", strict=False)
    assert len(done.unexpected) == 11 and done.missing == []
    wide = PointViTEncoder(**{**VIT, "embed_dim": 48, "num_heads": 2})
    with pytest.raises(ConfigError, match=r"has cls_token of shape \(32,\) where the encoder's cls_token is \(48,\) "
                                          r"\(.* differ\): set encoder_args"):
        load_converted(wide, state, report, "mae.pth", strict=False)


def test_reduce_dim_layouts_need_group_dim():
    for case in ("point_bert_pretrain", "point_bert", "ulip_pointbert"):
        state, report = convert_published(checkpoint(case)[0])
        with pytest.raises(ConfigError) as err:
            load_converted(vit(), state, report, "bert.pth")
        assert str(err.value) == (f"Checkpoint 'bert.pth' is a {report.title} encoder, whose reduce_dim Linear "
                                  f"256 -> 32 acts on tokens after their max pool: set encoder_args.group_dim=256 so "
                                  f"that PointViTEncoder has that layer.")


def test_squeeze_kernel():
    kernel = torch.randn(4, 3, 1)
    assert torch.equal(squeeze_kernel(kernel), kernel[:, :, 0]) and squeeze_kernel(torch.ones(4)).shape == (4,)
    with pytest.raises(BadCheckpointError, match=r"kernel of shape \(4, 3, 2\) is wider than 1"):
        squeeze_kernel(torch.randn(4, 3, 2))


def test_load_published_reads_the_file(tmp_path):
    ckpt, up = checkpoint("m2ae")
    ckpt["metrics"] = {"acc": 93.4}
    path = tmp_path / "m2ae_modelnet40.pth"
    torch.save(ckpt, path)
    encoder = m2ae_encoder()
    done = load_published(encoder, str(path))
    assert done.layout == "m2ae" and len(done.loaded) == len(encoder.state_dict())
    assert torch.equal(encoder.norm.bias, up["norm.bias"])
    with pytest.raises(ConfigError, match="lacks"):
        load_published(m2ae_encoder(), str(path), layout="m2ae_pretrain")


# ---- the renamed weights compute the published encoders --------------------------------------------------------

def upstream_conv_bn_conv(s: Dict[str, torch.Tensor], p: str, x: torch.Tensor) -> torch.Tensor:
    """Conv1d k=1, BatchNorm1d (eval, eps 1e-5), ReLU, Conv1d on (V, C, k)."""
    x = F.conv1d(x, s[p + "0.weight"], s[p + "0.bias"])
    x = F.batch_norm(x, s[p + "1.running_mean"], s[p + "1.running_var"], s[p + "1.weight"], s[p + "1.bias"], False,
                     0.0, 1e-5)
    return F.conv1d(F.relu(x), s[p + "3.weight"], s[p + "3.bias"])


def upstream_group_embedding(s: Dict[str, torch.Tensor], p: str, groups: torch.Tensor) -> torch.Tensor:
    """Point-MAE ``Encoder.forward`` / Point-M2AE ``Token_Embed.forward``: (V, k, C) -> (V, C_out)."""
    feature = upstream_conv_bn_conv(s, p + "first_conv.", groups.transpose(1, 2))
    pooled = feature.max(dim=2, keepdim=True)[0]
    feature = torch.cat([pooled.expand_as(feature), feature], dim=1)
    return upstream_conv_bn_conv(s, p + "second_conv.", feature).max(dim=2)[0]


def upstream_block(s: Dict[str, torch.Tensor], p: str, x: torch.Tensor, heads: int) -> torch.Tensor:
    """Point-MAE ``Block.forward`` (eval): pre-norm attention (qkv reshaped (B, N, 3, H, D)) and MLP."""
    b, n, c = x.shape
    h = F.layer_norm(x, (c,), s[p + "norm1.weight"], s[p + "norm1.bias"])
    q, k, v = F.linear(h, s[p + "attn.qkv.weight"]).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    attn = ((q @ k.transpose(-2, -1)) * (c // heads) ** -0.5).softmax(dim=-1)
    x = x + F.linear((attn @ v).transpose(1, 2).reshape(b, n, c), s[p + "attn.proj.weight"], s[p + "attn.proj.bias"])
    h = F.layer_norm(x, (c,), s[p + "norm2.weight"], s[p + "norm2.bias"])
    h = F.linear(F.gelu(F.linear(h, s[p + "mlp.fc1.weight"], s[p + "mlp.fc1.bias"])), s[p + "mlp.fc2.weight"],
                 s[p + "mlp.fc2.bias"])
    return x + h


def upstream_position(s: Dict[str, torch.Tensor], p: str, centers: torch.Tensor) -> torch.Tensor:
    return F.linear(F.gelu(F.linear(centers, s[p + "0.weight"], s[p + "0.bias"])), s[p + "2.weight"], s[p + "2.bias"])


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))


def test_point_mae_weights_compute_point_mae():
    """Point-MAE ``PointTransformer.forward`` on the same groups equals PointViTEncoder's global feature."""
    ckpt, up = checkpoint("point_mae")
    encoder = vit().eval()
    load_converted(encoder, *convert_published(ckpt), "mae.pth")
    pos = torch.rand(2, 96, 3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        centers, groups = encoder.tokenizer.group(pos)
        embedded = upstream_group_embedding(up, "encoder.", groups.flatten(0, 1)).view(2, VIT["num_groups"], C)
        assert torch.allclose(encoder.tokenizer.encoder(groups.flatten(0, 1)).view_as(embedded), embedded,
                              rtol=1e-5, atol=1e-5)
        x = torch.cat([up["cls_token"].expand(2, -1, -1), embedded], dim=1)
        position = torch.cat([up["cls_pos"].expand(2, -1, -1), upstream_position(up, "pos_embed.", centers)], dim=1)
        for i in range(DEPTH):
            x = upstream_block(up, f"blocks.blocks.{i}.", x + position, VIT["num_heads"])
        x = F.layer_norm(x, (C,), up["norm.weight"], up["norm.bias"])
        expected = torch.cat([x[:, 0], x[:, 1:].max(dim=1)[0]], dim=-1)
        assert close(encoder.forward_cls_feat(pos), expected)


@pytest.mark.parametrize("case", ["m2ae_pretrain", "i2p_mae_pretrain"])
def test_m2ae_weights_compute_the_svm_feature_of_point_m2ae(case):
    """Point-M2AE ``Point_M2AE.forward(eval=True)`` (``H_Encoder`` without a mask, the last stage normalised by
    encoder_norms[-1], mean + max) on the same scales equals PointM2AEEncoder's global feature."""
    ckpt, up = checkpoint(case)
    encoder = m2ae_encoder().eval()
    load_converted(encoder, *convert_published(ckpt), "m2ae.pth")
    pos = torch.rand(2, 128, 3, generator=torch.Generator().manual_seed(4))
    batch = torch.arange(2)[:, None, None]
    with torch.no_grad():
        scales = encoder.tokenize(pos)
        x = None
        for i, scale in enumerate(scales):
            members = (pos[batch, scale.neighbours] - scale.centers[:, :, None] if i == 0
                       else x[batch, scale.neighbours])
            x = upstream_group_embedding(up, f"h_encoder.token_embed.{i}.", members.flatten(0, 1))
            x = x.view(*scale.centers.shape[:2], -1)
            position = upstream_position(up, f"h_encoder.encoder_pos_embeds.{i}.", scale.centers)
            for j in range(M2AE["depths"][i]):
                x = upstream_block(up, f"h_encoder.encoder_blocks.{i}.blocks.{j}.", x + position, M2AE["num_heads"])
        x = F.layer_norm(x, x.shape[-1:], up["h_encoder.encoder_norms.2.weight"], up["h_encoder.encoder_norms.2.bias"])
        assert torch.allclose(encoder.forward_cls_feat(pos), x.mean(1) + x.max(1)[0], rtol=1e-4, atol=1e-5)


# ---- the engine: finetune and svm accept published checkpoints --------------------------------------------------

def test_engine_reads_published_checkpoints(tmp_path):
    ckpt, _ = checkpoint("m2ae_pretrain")
    path = tmp_path / "pretrain.pth"
    torch.save(ckpt, path)
    encoder = m2ae_encoder()
    report = load_into_encoder(encoder, load_encoder_state(str(path), "load_path"), str(path))
    assert report.count == len(encoder.state_dict()) and report.unexpected == []
    assert f"a {LAYOUTS['m2ae_pretrain'].title} checkpoint, {len(report.ignored)} of its tensors ignored on " \
           f"purpose" in report.summary()
    # a whole ULIP checkpoint: its training arguments are an argparse.Namespace, which is allowed
    ulip = tmp_path / "ulip.pth"
    torch.save({**checkpoint("ulip_pointbert")[0], "args": argparse.Namespace(model="ULIP_PointBERT", lr=3e-3)}, ulip)
    with pytest.raises(ConfigError, match="reduce_dim Linear 256 -> 32 .*: set encoder_args.group_dim=256"):
        load_into_encoder(vit(), load_encoder_state(str(ulip), "load_path"), str(ulip))
    encoder = bert_like()
    report = load_into_encoder(encoder, load_encoder_state(str(ulip), "load_path"), str(ulip))
    assert report.count + len(report.kept) == len(encoder.state_dict()) and report.unexpected == []


def test_finetune_starts_from_a_point_mae_pretraining_checkpoint(tiny_modelnet, tmp_path, main,
                                                                  encoder_at_first_step):
    ckpt, up = checkpoint("point_mae_pretrain")
    path = tmp_path / "pretrain.pth"
    torch.save(ckpt, path)
    at_start = encoder_at_first_step
    overrides = [o for o in tiny_overrides(tiny_modelnet, tmp_path, epochs=1) if not o.startswith("model.encoder")]
    encoder_keys = [f"model.encoder_args.{key}={value}" for key, value in VIT.items()]
    cfg = str(REPO / "cfgs" / "modelnet40" / "pointvit.yaml")
    assert main(["--cfg", cfg, *overrides, *encoder_keys, "warmup_epochs=0", "mode=finetune",
                 f"pretrained_path={path}"]) == 0
    state, _ = convert_published(ckpt)
    assert set(at_start) - set(state) == {"cls_token", "cls_pos"}
    for key, value in state.items():
        assert torch.equal(at_start[key], value), key
    assert torch.equal(at_start["blocks.1.attn.qkv.weight"], up["MAE_encoder.blocks.blocks.1.attn.qkv.weight"])
    run = only_run(tmp_path)
    assert json.loads((run / "metrics.json").read_text())["encoder_tensors_loaded"] == len(state) == len(at_start) - 2
    log = (run / "log.txt").read_text()
    assert f"loaded {len(state)} encoder tensors from {path}" in log
    assert "a Point-MAE pre-training (Point_MAE) checkpoint" in log and "kept at initialisation: cls_token, cls_pos" \
        in log
