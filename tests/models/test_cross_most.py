"""CrossMoST and its maskable image towers: parity with the unmasked towers, what masking hides, the MIM/MPM targets,
Image*, the switches and weights, the EMA teacher, alignment loading and the errors."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from plugin.errors import BadInputError, ConfigError
from plugin.losses.self_training import masked_token_l1
from plugin.models import CLIPAlign, CrossMoST, ModelEma, MomentumSchedule
from plugin.models.backbones.image_embedders import build_image_embedder
from plugin.models.backbones.maskable_image import build_image_tower

TINY_CLIP = {"NAME": "clip", "name": "tiny-clip-test", "pretrained": "none"}
TINY_VIT = {"NAME": "PointViTEncoder", "embed_dim": 32, "depth": 1, "num_heads": 2, "num_groups": 8, "group_size": 8,
            "drop_path_rate": 0.0}
CLASSES = ["chair", "lamp", "table"]
B, N, S = 4, 128, 32
POINTNEXT = {"NAME": "PointNextEncoder", "blocks": [1, 1], "strides": [1, 2], "width": 16, "in_channels": 3,
             "sa_layers": 1, "radius": 0.15, "nsample": 16, "aggr_args": {"feature_type": "dp_fj", "reduction": "max"},
             "group_args": {"NAME": "ballquery", "normalize_dp": True}, "conv_args": {"order": "conv-norm-act"},
             "act_args": {"act": "relu"}, "norm_args": {"norm": "bn"}}


def make_model(**overrides) -> CrossMoST:
    torch.manual_seed(0)
    args = dict(encoder_args=dict(TINY_VIT), image_encoder=dict(TINY_CLIP), class_names=CLASSES, threshold=0.0)
    return CrossMoST(**{**args, **overrides})


def pair_batch(seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"img_weak": torch.rand(B, 3, S, S, generator=g), "img_strong": torch.rand(B, 3, S, S, generator=g),
            "pos_weak": torch.rand(B, N, 3, generator=g), "pos_strong": torch.rand(B, N, 3, generator=g),
            "y": torch.tensor([0, 1, 2, 0])}


# ---- image towers ----

def test_clip_tower_without_mask_is_open_clips_visual_forward():
    tower, clip = build_image_tower(TINY_CLIP)
    tower.eval()
    img = torch.rand(2, 3, S, S)
    assert_close(tower(img).embedding, tower.visual(tower.normalize(img)), rtol=1e-5, atol=1e-6)
    assert_close(tower(img).embedding, clip.model.visual(tower.normalize(img)), rtol=1e-5, atol=1e-6)  # a copy
    assert tower.visual is not clip.model.visual and next(tower.parameters()).requires_grad


@pytest.mark.parametrize("kind", ["clip", "timm"])
def test_a_fully_masked_image_no_longer_depends_on_its_pixels(kind):
    cfg = TINY_CLIP if kind == "clip" else {"NAME": "timm", "name": "tf_efficientnet_lite0", "pretrained": "none",
                                            "image_size": 64}
    torch.manual_seed(0)
    tower, _ = build_image_tower(cfg)
    tower.eval()
    cells = tower.grid[0] * tower.grid[1]
    a, b = torch.rand(1, 3, tower.image_size, tower.image_size), torch.rand(1, 3, tower.image_size, tower.image_size)
    everything = torch.ones(1, cells, dtype=torch.bool)
    assert_close(tower(a, everything).embedding, tower(b, everything).embedding, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(tower(a).embedding, tower(b).embedding, atol=1e-4)
    with pytest.raises(BadInputError, match="patch mask"):
        tower(a, torch.ones(1, cells + 1, dtype=torch.bool))


def test_lite0_tower_starts_in_the_frozen_embedders_space():
    cfg = {"NAME": "timm", "name": "tf_efficientnet_lite0", "pretrained": "efficientnet_lite0_package",
           "image_size": 96}
    tower, _ = build_image_tower(cfg)
    embedder = build_image_embedder(cfg)
    tower.eval()
    img = torch.rand(2, 3, 96, 96)
    assert_close(F.normalize(tower(img).embedding, dim=-1), embedder(img), rtol=1e-4, atol=1e-5)
    assert torch.equal(tower.projection.weight, torch.eye(tower.dim))        # f^I = identity at the start


# ---- the loss and its pieces ----

def test_forward_trains_the_student_and_gives_the_teacher_no_gradient():
    model = make_model()
    teacher = ModelEma(model, MomentumSchedule(0.99, 0.9998, 400)).module
    loss, logs = model(pair_batch(), teacher)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(not p.requires_grad for p in teacher.parameters())
    trained = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert trained == []                                                      # every trainable parameter is reached
    assert not any(p.requires_grad for p in model.encoder.tokenizer.parameters())   # frozen tokenizer (release)
    expected = sum(model.weights[name[5:]] * value for name, value in logs.items() if name.startswith("loss_"))
    assert loss.item() == pytest.approx(expected, rel=1e-5)                   # L = sum of the weighted terms
    assert set(logs) >= {"loss_cls", "loss_fair", "loss_align", "loss_mim", "loss_mpm", "loss_gl", "pl_kept",
                         "pl_from_image", "pl_conf", "pl_agree", "pl_acc"}


def test_the_weights_scale_their_terms():
    model = make_model(weights={"gl": 0.0, "mim": 2.0})
    teacher = ModelEma(model, 0.99).module
    torch.manual_seed(3)
    loss, logs = model(pair_batch(), teacher)
    expected = (logs["loss_cls"] + logs["loss_fair"] + logs["loss_align"] + 2 * logs["loss_mim"] + logs["loss_mpm"])
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("switches, present, absent", [
    ({"align": False}, {"loss_cls", "loss_fair", "loss_mim"}, {"loss_align"}),
    ({"fairness": False}, {"loss_align"}, {"loss_fair"}),
    ({"masked_modelling": False}, {"loss_cls"}, {"loss_mim", "loss_mpm", "loss_gl"}),
    ({"masked_modelling": "image"}, {"loss_mim", "loss_gl"}, {"loss_mpm"}),
    ({"masked_modelling": "point"}, {"loss_mpm", "loss_gl"}, {"loss_mim"}),
])
def test_switches_add_and_remove_their_terms(switches, present, absent):
    model = make_model(**switches)
    loss, logs = model(pair_batch(), ModelEma(model, 0.99).module)
    assert present <= set(logs) and not absent & set(logs)
    loss.backward()
    # a term switched off leaves no trainable parameter without gradient (DDP would stall on it)
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


def test_align_reduction_sum_doubles_the_mean_and_the_temperature_scales_the_logits():
    torch.manual_seed(5)
    batch = pair_batch()
    mean = make_model(align_reduction="mean", masked_modelling=False)
    total = make_model(align_reduction="sum", masked_modelling=False)
    teacher = ModelEma(mean, 0.99).module
    torch.manual_seed(6)
    _, logs_mean = mean(batch, teacher)
    torch.manual_seed(6)
    _, logs_sum = total(batch, teacher)
    assert logs_sum["loss_align"] == pytest.approx(2 * logs_mean["loss_align"], rel=1e-5)


def test_mpm_target_is_the_original_token_embedding_not_the_mask_token():
    model = make_model()
    pos = torch.rand(2, N, 3)
    mask = torch.zeros(2, TINY_VIT["num_groups"], dtype=torch.bool)
    mask[:, :3] = True
    emb, out = model.point_features(pos, mask)
    original = model.encoder.tokenizer(pos)[1]
    assert torch.equal(out.embedded, original)
    mpm, _ = model._mpm(emb, out)
    decoded = model.point_decoder(out.tokens)
    assert mpm.item() == pytest.approx(masked_token_l1(decoded, original, mask).item())
    against_mask_token = masked_token_l1(decoded, model.encoder.mask_token.expand_as(original), mask)
    assert mpm.item() != pytest.approx(against_mask_token.item())


def test_mim_reads_the_masked_patches_only():
    model = make_model()
    img = torch.rand(1, 3, S, S)
    cells = model.image.grid[0] * model.image.grid[1]
    mask = torch.zeros(1, cells, dtype=torch.bool)
    mask[0, 0] = True                                                         # the top-left patch
    out = model.image(img, mask)
    base, _ = model._mim(out, mask)
    patch = model.image.patch
    unmasked = out.normalized.clone()
    unmasked[..., patch:, patch:] += 5.0                                      # pixels of visible patches
    assert model._mim(out._replace(normalized=unmasked), mask)[0].item() == pytest.approx(base.item())
    masked = out.normalized.clone()
    masked[..., :patch, :patch] += 5.0
    assert model._mim(out._replace(normalized=masked), mask)[0].item() != pytest.approx(base.item())


def test_image_star_averages_the_views_embeddings():
    model = make_model().eval()
    views = torch.rand(2, 3, 3, S, S)
    logits = model.predict({"img": views[:, 0], "img_views": views})
    same = model.predict({"img": views[:, 0], "img_views": views[:, :1].expand(-1, 4, -1, -1, -1)})
    assert_close(same["image_star"], same["image"], rtol=1e-5, atol=1e-5)     # identical views: Image* = Image
    emb = F.normalize(model.image(views.flatten(0, 1)).embedding, dim=-1).view(2, 3, -1).mean(1)
    assert_close(logits["image_star"], model.logits(emb), rtol=1e-5, atol=1e-5)


def test_the_teacher_is_an_ema_with_the_ramped_momentum():
    model = make_model()
    schedule = MomentumSchedule(0.99, 0.9998, 400)
    ema = ModelEma(model, schedule)
    before = ema.module.classifier.detach().clone()
    with torch.no_grad():
        model.classifier.add_(1.0)
    ema.update(model, step=200)
    m = 0.99 + (0.9998 - 0.99) * 200 / 400
    assert ema.momentum == pytest.approx(m)
    assert_close(ema.module.classifier, m * before + (1 - m) * model.classifier.detach())
    assert schedule(400) == schedule(10_000) == pytest.approx(0.9998) and schedule(0) == pytest.approx(0.99)


def test_empty_kept_set_gives_a_finite_loss():
    model = make_model(threshold=0.999999)
    loss, logs = model(pair_batch(), ModelEma(model, 0.99).module)
    assert math.isfinite(loss.item()) and logs["loss_cls"] == 0.0 and logs["pl_kept"] == 0.0
    assert "pl_acc" not in logs


def test_freeze_batchnorm_keeps_statistics_in_eval_mode():
    torch.manual_seed(0)
    model = make_model(image_encoder={"NAME": "timm", "name": "tf_efficientnet_lite0", "pretrained": "none",
                                      "image_size": 64}, classifier_init="examples", masked_modelling="point")
    model.train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and not any(m.training for m in norms) and model.image.training
    assert make_model(image_encoder=model.image_encoder_cfg, classifier_init="examples",
                      freeze_batchnorm=False).train().image.body.bn1.training


def test_layer_decay_scales_the_image_towers_learning_rates():
    model = make_model(layer_decay=0.5)
    groups = model.param_groups()
    assert [g.lr_scale for g in groups] == [0.25, 0.5, 1.0]                  # stem, 1 block, head of the tiny ViT
    assert groups[0].params[-1] is model.image.mask_token


def test_classifier_from_text_and_from_examples():
    model = make_model()
    assert_close(model.classifier.norm(dim=1), torch.ones(3))                 # CLIP text embeddings, normalised
    model.init_classifier(torch.tensor([[3.0] * 32, [1.0] * 32, [-2.0] * 32]))
    assert_close(model.classifier[0], torch.full((32,), 32 ** -0.5))
    with pytest.raises(BadInputError, match="class embeddings"):
        model.init_classifier(torch.zeros(2, 32))


def test_alignment_export_loads_the_point_branch():
    torch.manual_seed(1)
    align = CLIPAlign(encoder_args=dict(TINY_VIT), objective="plain", embed_dim=32)
    state = align.checkpoint_entries()
    model = make_model(image_encoder={"NAME": "timm", "name": "tf_efficientnet_lite0", "pretrained": "none",
                                      "image_size": 64, "embed_dim": 32}, classifier_init="examples")
    model.load_alignment(state, "align.pth")
    for name, value in align.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], value)
    assert torch.equal(model.projection.weight, align.projection.weight)
    assert model.logit_scale.item() == pytest.approx(align.logit_scale.item())   # a timm tower takes the export's s
    with pytest.raises(ConfigError, match="projection"):
        model.load_alignment({"encoder": state["encoder"]}, "half.pth")
    other = CLIPAlign(encoder_args={**TINY_VIT, "embed_dim": 16}, objective="plain", embed_dim=32)
    with pytest.raises(ConfigError, match="does not fit"):
        model.load_alignment(other.checkpoint_entries(), "other.pth")


def test_export_holds_the_point_encoder():
    state = make_model().checkpoint_entries()
    assert state["exports"] == "encoder" and state["encoder_args"]["NAME"] == "PointViTEncoder"
    assert state["class_names"] == CLASSES and tuple(state["classifier"].shape) == (3, 32)


@pytest.mark.parametrize("overrides, match", [
    ({"pseudo_labels": "both"}, "pseudo_labels"),
    ({"masked_modelling": "pixels"}, "masked_modelling"),
    ({"align_reduction": "max"}, "align_reduction"),
    ({"align_temperature": 0.0}, "align_temperature"),
    ({"point_mask_ratio": [0.5, 0.3]}, "point_mask_ratio"),
    ({"weights": {"clss": 1.0}}, "model.weights.clss"),
    ({"weights": {"cls": -1.0}}, "negative"),
    ({"threshhold": 0.8}, "model.threshhold"),
    ({"align": "yes"}, "model.align"),
    ({"class_names": None}, "class_names"),
    ({"image_encoder": {"NAME": "timm", "name": "tf_efficientnet_lite0", "pretrained": "none", "image_size": 64}},
     "text tower"),
    ({"encoder_args": POINTNEXT}, "token encoder"),
])
def test_configuration_errors_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        make_model(**overrides)


def test_batch_errors():
    model = make_model()
    with pytest.raises(ConfigError, match="mode=selftrain"):
        model(pair_batch())
    batch = pair_batch()
    del batch["img_strong"]
    with pytest.raises(BadInputError, match="img_strong"):
        model(batch, ModelEma(model, 0.99).module)
