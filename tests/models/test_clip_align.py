"""CLIPAlign: the ULIP, hard-negative and plain objectives against direct computations, the store's weights for the
(global) batch, frozen towers, the temperature clamp, training with the tiny CLIP, and the export round trip."""
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from openpoints.models import build_model_from_cfg
from openpoints.models.build import MODELS
from openpoints.utils import EasyConfig
from torch.testing import assert_close

import plugin  # noqa: F401  (registers CLIPAlign and the tiny CLIP)
from plugin.clip import text_classifier
from plugin.clip.similarity_store import (SimilarityStore, file_fingerprint, make_manifest, write_category,
                                          write_manifest)
from plugin.errors import BadInputError, ConfigError, DataNotFoundError
from plugin.io import read_checkpoint, save_torch
from plugin.losses import negative_weights, weighted_contrastive
from plugin.models import CLIPAlign
from plugin.models.base import PretextModel
from plugin.models.pretext import clip_align
from plugin.models.pretext.clip_align import global_negative_weights, resolve_class_names, store_similarity

TINY_POINTNEXT = {"NAME": "PointNextEncoder", "blocks": [1, 1, 1], "strides": [1, 4, 1], "width": 8, "in_channels": 3,
                  "sa_layers": 1, "radius": 0.3, "nsample": 8, "expansion": 2,
                  "aggr_args": {"feature_type": "dp_fj", "reduction": "max"},
                  "group_args": {"NAME": "ballquery", "normalize_dp": True}, "conv_args": {"order": "conv-norm-act"},
                  "act_args": {"act": "relu"}, "norm_args": {"norm": "bn"}}
TINY_CLIP = {"NAME": "clip", "name": "tiny-clip-test", "pretrained": "none"}  # 32-d embeddings
CATEGORIES = {"chair": ["c0", "c1", "c2", "c3"], "lamp": ["l0", "l1", "l2"]}
# a batch of six objects: store category index and row of each
SIM_CATEGORY, SIM_ROW = torch.tensor([0, 0, 1, 0, 1, 1]), torch.tensor([0, 2, 1, 3, 0, 2])
CLASS_NAMES = ["chair", "lamp"]


def _matrices(seed: int):
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, ids in CATEGORIES.items():
        m = torch.rand(len(ids), len(ids), generator=generator) * 0.9 + 0.1
        out[name] = (m + m.t()) / 2
    return out


STORED = {"i2i": _matrices(0), "i2l2": _matrices(1)}


def write_store(root, kinds=("i2i", "i2l2"), constant=None):
    """A similarity store on disk with the two categories; every entry ``constant`` when set."""
    manifest = make_manifest({"kind": "test"}, views=2, categories=CATEGORIES, kinds=list(kinds))
    for kind in kinds:
        for name, ids in CATEGORIES.items():
            matrix = STORED[kind][name] if constant is None else torch.full((len(ids), len(ids)), constant)
            write_category(str(root), kind, name, ids, matrix, "float32",
                           file_fingerprint(manifest, kind, name, ids))
    write_manifest(str(root), manifest)
    return str(root)


def tiny_model(objective: str = "plain", seed: int = 0, **kwargs) -> CLIPAlign:
    torch.manual_seed(seed)
    cfg = EasyConfig()
    cfg.update({"NAME": "CLIPAlign", "encoder_args": TINY_POINTNEXT, "objective": objective,
                "image_encoder": TINY_CLIP, **kwargs})
    return build_model_from_cfg(cfg)


def tiny_batch(b: int = 6, n: int = 128, seed: int = 0, images: bool = True):
    g = torch.Generator().manual_seed(seed)
    pos = F.normalize(torch.randn(b, n, 3, generator=g), dim=-1) * torch.rand(b, 1, 3, generator=g).add(0.3)
    batch = {"pos": pos, "y": SIM_CATEGORY[:b].clone(), "sim_category": SIM_CATEGORY[:b].clone(),
             "sim_row": SIM_ROW[:b].clone()}
    if images:
        batch["img"] = torch.rand(b, 3, 40, 40, generator=g)
    else:
        batch["img_emb"] = F.normalize(torch.randn(b, 32, generator=g), dim=-1)
    return batch


def _brute_force_weights(kind, alpha=0.25):
    """W of the six-object batch from the stored matrices, by loops."""
    n = len(SIM_CATEGORY)
    names = list(CATEGORIES)
    s = torch.empty(n, n)
    for i in range(n):
        for j in range(n):
            ci, cj = int(SIM_CATEGORY[i]), int(SIM_CATEGORY[j])
            s[i, j] = STORED[kind][names[ci]][SIM_ROW[i], SIM_ROW[j]] if ci == cj else alpha
    w = torch.empty(n, n)
    for i in range(n):
        total = sum(float(s[i, k]) for k in range(n) if k != i)
        for j in range(n):
            w[i, j] = 1.0 if i == j else (n - 1) * float(s[i, j]) / total
    return w


def test_clip_align_is_a_registered_pretext_model_with_zero_shot_and_retrieval():
    assert MODELS.get("CLIPAlign") is CLIPAlign and issubclass(CLIPAlign, PretextModel)
    assert CLIPAlign.exports == "encoder" and CLIPAlign.supports_zero_shot and CLIPAlign.supports_retrieval
    model = tiny_model()
    assert math.isclose(model.logit_scale.item(), math.log(1 / 0.07), rel_tol=1e-6)   # s_0 = log(1/0.07)
    # the frozen towers are outside the module tree: only the encoder, the projection and s are parameters
    assert {name.split(".")[0] for name, _ in model.named_parameters()} == {"encoder", "projection", "logit_scale"}


def test_encoders_give_normalised_embeddings_of_the_shared_dimension():
    model = tiny_model().eval()
    batch = tiny_batch(4)
    z_3d, z_img, text = model.encode_3d(batch), model.encode_image(batch), model.encode_text(["chair", "lamp", "cup"])
    assert z_3d.shape == (4, 32) and z_img.shape == (4, 32) and text.shape == (3, 32)
    for z in (z_3d, z_img, text):
        assert_close(z.norm(dim=-1), torch.ones(len(z)))
    assert_close(model.encode_image(batch), model.frozen.image(batch["img"]))
    emb = torch.randn(4, 32) * 3
    assert_close(model.encode_image({**batch, "img_emb": emb}), F.normalize(emb, dim=-1))  # img_emb wins
    assert not z_3d.requires_grad
    with pytest.raises(BadInputError, match="img_emb or img"):
        model.encode_image({"pos": batch["pos"]})
    with pytest.raises(BadInputError, match=r"not \(B, 32\)"):
        model.encode_image({"img_emb": torch.randn(4, 16)})


def test_plain_loss_is_the_symmetric_cross_entropy_of_the_scaled_cosines():
    model = tiny_model().eval()
    batch = tiny_batch()
    loss, logs = model(batch)
    z_3d, z_img = model.encode_3d(batch), model.encode_image(batch)
    expected = weighted_contrastive(model.scale() * z_3d @ z_img.t())
    assert_close(loss, expected.detach(), rtol=1e-5, atol=1e-6)
    assert set(logs) == {"loss", "loss_image", "logit_scale", "acc"} and logs["loss"] == pytest.approx(float(loss))
    assert logs["logit_scale"] == pytest.approx(1 / 0.07, rel=1e-5)


@pytest.mark.parametrize("kind", ["i2i", "i2l2", "avg"])
def test_hardneg_weights_the_negatives_with_the_stores_similarity(tmp_path, kind):
    model = tiny_model("hardneg", similarity={"dir": write_store(tmp_path), "kind": kind, "alpha": 0.25}).eval()
    batch = tiny_batch()
    w = (_brute_force_weights("i2i") + _brute_force_weights("i2l2")) / 2 if kind == "avg" \
        else _brute_force_weights(kind)
    assert_close(global_negative_weights(model.store, kind, 0.25, SIM_CATEGORY, SIM_ROW), w, rtol=1e-6, atol=1e-7)
    loss, _ = model(batch)
    z_3d, z_img = model.encode_3d(batch), model.encode_image(batch)
    assert_close(loss, weighted_contrastive(model.scale() * z_3d @ z_img.t(), w).detach(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(loss, weighted_contrastive(model.scale() * z_3d @ z_img.t()).detach())  # not plain


def test_store_similarity_reads_each_pair_of_one_category_from_its_matrix(tmp_path):
    store = SimilarityStore.open(write_store(tmp_path))
    s, same = store_similarity(store, "i2l2", SIM_CATEGORY, SIM_ROW)
    names = list(CATEGORIES)
    for i in range(6):
        for j in range(6):
            ci, cj = int(SIM_CATEGORY[i]), int(SIM_CATEGORY[j])
            assert bool(same[i, j]) == (ci == cj)
            assert float(s[i, j]) == pytest.approx(float(STORED["i2l2"][names[ci]][SIM_ROW[i], SIM_ROW[j]])
                                                   if ci == cj else 0.0)
    with pytest.raises(BadInputError, match="same store"):
        store_similarity(store, "i2i", torch.tensor([0, 1]), torch.tensor([0, 3]))   # lamp has 3 objects
    with pytest.raises(BadInputError, match="same store"):
        store_similarity(store, "i2i", torch.tensor([0, 2]), torch.tensor([0, 0]))   # 2 categories only


def test_hardneg_with_unit_weights_equals_plain_exactly(tmp_path):
    # every similarity equal to alpha: W = 1 exactly, so the hard-negative loss is the plain loss bit for bit
    hardneg = tiny_model("hardneg", similarity={"dir": write_store(tmp_path, constant=0.25), "kind": "avg"}).eval()
    plain = tiny_model("plain", seed=1).eval()
    plain.load_state_dict(hardneg.state_dict())
    batch = tiny_batch(images=False)                         # the two random tiny CLIPs differ: precomputed targets
    assert torch.equal(global_negative_weights(hardneg.store, "avg", 0.25, SIM_CATEGORY, SIM_ROW), torch.ones(6, 6))
    assert torch.equal(hardneg(batch)[0], plain(batch)[0])


def test_ulip_objective_adds_the_text_term_of_each_samples_category(tmp_path):
    model = tiny_model("ulip", class_names=CLASS_NAMES, templates=["a {}.", "a photo of a {}."]).eval()
    batch = tiny_batch()
    loss, logs = model(batch)
    z_3d, z_img = model.encode_3d(batch), model.encode_image(batch)
    text = text_classifier(model.frozen.text, CLASS_NAMES, ["a {}.", "a photo of a {}."])[batch["y"]]
    scale = model.scale().detach()
    loss_text = weighted_contrastive(scale * z_3d @ text.t())               # 1/2 [CE(P->T) + CE(T->P)]
    loss_image = weighted_contrastive(scale * z_3d @ z_img.t())             # 1/2 [CE(P->I) + CE(I->P)]
    assert_close(loss.detach(), loss_text + loss_image, rtol=1e-5, atol=1e-6)
    assert logs["loss_text"] == pytest.approx(float(loss_text), rel=1e-5)
    assert logs["loss_image"] == pytest.approx(float(loss_image), rel=1e-5)
    with pytest.raises(BadInputError, match="model.class_names"):
        model({**batch, "y": torch.tensor([0, 1, 2, 0, 1, 0])})
    names = tmp_path / "labels.json"
    names.write_text('{"tiny": ["chair", "lamp"], "other": ["cup"]}')
    assert resolve_class_names(f"{names}:tiny") == CLASS_NAMES
    with pytest.raises(ConfigError, match="labels.json:NAME"):
        resolve_class_names(str(names))
    with pytest.raises(ConfigError, match="needs model.class_names"):
        tiny_model("ulip")


ULIP_TEMPLATES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "text" / "ulip_templates.json"


@pytest.mark.skipif(not ULIP_TEMPLATES.is_file(), reason="../shared/data/text is only present beside the project")
def test_ulip_needs_its_templates_and_reads_ulips_templates_file():
    with pytest.raises(ConfigError, match="model.templates"):
        tiny_model("ulip", class_names=CLASS_NAMES)
    model = tiny_model("ulip", class_names=CLASS_NAMES, templates=f"{ULIP_TEMPLATES}:shapenet_64",
                       zeroshot_templates=f"{ULIP_TEMPLATES}:modelnet40_64")
    assert len(model.templates) == 64 and model.zeroshot_templates[0] == "a point cloud model of {}."


def test_gradients_reach_only_the_encoder_the_projection_and_the_temperature():
    model = tiny_model("ulip", class_names=CLASS_NAMES, templates=["a {}."]).train()
    loss, _ = model(tiny_batch())
    loss.backward()
    trained = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert "logit_scale" in trained and {"projection.weight", "projection.bias"} <= trained
    assert any(name.startswith("encoder.") for name in trained)
    assert {name.split(".")[0] for name in trained} == {"encoder", "projection", "logit_scale"}
    towers = [*model.frozen.image.parameters(), *model.frozen.text.model.parameters()]
    assert towers and all(not p.requires_grad and p.grad is None for p in towers)
    assert not model.frozen.image.training and not model.frozen.text.model.training   # kept in eval mode


def test_the_temperature_is_clamped_at_100():
    model = tiny_model().eval()
    batch = tiny_batch()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1000.0))
    assert float(model.scale()) == pytest.approx(100.0)
    loss, logs = model(batch)
    assert logs["logit_scale"] == pytest.approx(100.0)
    z_3d, z_img = model.encode_3d(batch), model.encode_image(batch)
    assert_close(loss.detach(), weighted_contrastive(100.0 * z_3d @ z_img.t()), rtol=1e-5, atol=1e-6)
    model.train()(batch)                                       # in training, s itself is clamped before use
    assert float(model.logit_scale) == pytest.approx(math.log(100.0))


@pytest.mark.parametrize("objective", ["plain", "hardneg", "ulip"])
def test_a_few_training_steps_lower_the_loss_with_the_tiny_clip(tmp_path, objective):
    extra = {"hardneg": {"similarity": {"dir": write_store(tmp_path), "kind": "avg"}},
             "ulip": {"class_names": CLASS_NAMES, "templates": ["a {}."]}}.get(objective, {})
    model = tiny_model(objective, **extra).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = tiny_batch()
    losses = []
    for _ in range(10):
        loss, _ = model(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0], losses


def test_export_loads_back_strictly_and_gives_the_same_embeddings(tmp_path):
    model = tiny_model(seed=0).eval()
    with torch.no_grad():
        model.logit_scale.fill_(2.5)
    entries = model.checkpoint_entries()
    assert set(entries) == {"encoder", "encoder_args", "projection", "logit_scale", "image_encoder", "exports"}
    assert entries["exports"] == "encoder" and entries["image_encoder"] == TINY_CLIP
    assert set(entries["encoder"]) == {k[len("encoder."):] for k in model.state_dict() if k.startswith("encoder.")}
    path = tmp_path / "ckpt_best.pth"
    save_torch(entries, str(path))
    state = read_checkpoint(str(path), "pretrained_path")
    other = tiny_model(seed=1).eval()
    batch = tiny_batch(4)
    assert not torch.allclose(other.encode_3d(batch), model.encode_3d(batch))
    other.load_export(state, str(path))
    assert torch.equal(other.encode_3d(batch), model.encode_3d(batch))
    assert float(other.logit_scale) == 2.5
    # the exported encoder loads into OpenPoints' BaseCls for svm/finetune
    cfg = EasyConfig()
    cfg.update({"NAME": "BaseCls", "encoder_args": state["encoder_args"],
                "cls_args": {"NAME": "ClsHead", "num_classes": 2, "mlps": [16]}})
    build_model_from_cfg(cfg).encoder.load_state_dict(state["encoder"], strict=True)
    with pytest.raises(ConfigError, match="no projection entry"):
        other.load_export({k: v for k, v in state.items() if k != "projection"}, str(path))
    wider = tiny_model(encoder_args={**TINY_POINTNEXT, "width": 16})
    with pytest.raises(ConfigError, match="does not fit this model"):
        wider.load_export(state, str(path))


def test_biases_norms_and_the_temperature_train_without_weight_decay():
    model = tiny_model()
    (group,) = model.param_groups()
    assert group.weight_decay_scale == 0.0
    no_decay = {id(p) for p in group.params}
    assert id(model.logit_scale) in no_decay and id(model.projection.bias) in no_decay
    assert id(model.projection.weight) not in no_decay
    assert all(id(p) in no_decay for name, p in model.encoder.named_parameters() if p.ndim == 1)


def test_config_errors_are_one_sentence_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="model.objective is 'triplet'"):
        tiny_model("triplet")
    with pytest.raises(ConfigError, match="model.tau"):
        tiny_model(tau=0.07)
    with pytest.raises(ConfigError, match="model.similarity.dir"):
        tiny_model("hardneg")
    with pytest.raises(ConfigError, match="model.similarity.kind is 'i2x'"):
        tiny_model("hardneg", similarity={"dir": str(tmp_path), "kind": "i2x"})
    with pytest.raises(DataNotFoundError, match="model.similarity.dir"):
        tiny_model("hardneg", similarity={"dir": str(tmp_path / "none")})
    with pytest.raises(ConfigError, match="not i2l2"):
        tiny_model("hardneg", similarity={"dir": write_store(tmp_path / "i2i", kinds=("i2i",)), "kind": "avg"})
    with pytest.raises(ConfigError, match="set model.embed_dim"):
        tiny_model(image_encoder=None)
    with pytest.raises(ConfigError, match="set model.embed_dim to 32 or null"):
        tiny_model(embed_dim=64)
    with pytest.raises(ConfigError, match="in \\(0, 100\\]"):
        tiny_model(logit_scale_init=200.0)
    with pytest.raises(BadInputError, match="sim_category and sim_row"):
        tiny_model("hardneg", similarity={"dir": write_store(tmp_path / "s")})({"pos": torch.rand(2, 64, 3),
                                                                                 "img_emb": torch.randn(2, 32)})


def test_precomputed_image_embeddings_need_no_image_encoder():
    model = tiny_model(image_encoder=None, embed_dim=32).eval()
    batch = tiny_batch(images=False)
    loss, _ = model(batch)
    assert_close(loss, weighted_contrastive(model.scale() * model.encode_3d(batch) @ batch["img_emb"].t()).detach(),
                 rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="needs a CLIP text tower"):
        model.encode_text(["chair"])
    with pytest.raises(ConfigError, match="no image encoder"):
        model.encode_image({"img": torch.rand(2, 3, 32, 32)})


# ---- DDP: W is built for the global batch ----

def test_under_ddp_the_weights_span_the_global_batch(tmp_path, monkeypatch):
    """Each of two ranks holds three objects; the gather (simulated here, the real one is tested with the loss in
    tests/losses/test_weighted_contrastive.py) gives every rank the six rows, in rank order, and so the same W."""
    store = SimilarityStore.open(write_store(tmp_path))
    expected = (_brute_force_weights("i2i") + _brute_force_weights("i2l2")) / 2
    for rank in range(2):
        mine = slice(rank * 3, (rank + 1) * 3)

        def gather(local, rank=rank, mine=mine):               # this rank's categories or rows -> all of them
            full = {tuple(SIM_CATEGORY[mine].tolist()): SIM_CATEGORY, tuple(SIM_ROW[mine].tolist()): SIM_ROW}
            return full[tuple(local.tolist())], rank * 3

        monkeypatch.setattr(clip_align, "gather_rows", gather)
        assert_close(global_negative_weights(store, "avg", 0.25, SIM_CATEGORY[mine], SIM_ROW[mine]), expected,
                     rtol=1e-6, atol=1e-7)


def test_negative_weights_of_the_store_match_the_loss_function(tmp_path):
    store = SimilarityStore.open(write_store(tmp_path))
    s, same = store_similarity(store, "i2i", SIM_CATEGORY, SIM_ROW)
    assert_close(negative_weights(s, same, 0.25), _brute_force_weights("i2i"), rtol=1e-6, atol=1e-7)


def test_validation_logits_are_the_zero_shot_logits_and_need_a_text_tower():
    from plugin.clip import zero_shot_logits

    model = tiny_model("plain").eval()
    batch = tiny_batch()
    names = ["airplane", "bench", "bathtub"]
    expected = zero_shot_logits(model.encode_3d(batch), model.encode_text(names))
    assert_close(model.validation_logits(batch["pos"], names), expected)
    textless = tiny_model("plain", image_encoder=None, embed_dim=32).eval()
    with pytest.raises(ConfigError, match="pretrain.select=loss"):
        textless.validation_logits(batch, names)
