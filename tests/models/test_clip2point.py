"""CLIP2Point pre-training model on a tiny random CLIP: gradients, rendering, export, optimiser groups."""
import copy

import pytest
import torch
from openpoints.models import build_model_from_cfg
from openpoints.utils import EasyConfig

from plugin.clip import DEPTH_ENCODER_KEY, load_clip, load_depth_encoder, zero_shot_logits
from plugin.engine.builders import build_grouped_optimizer
from plugin.errors import ConfigError
from plugin.eval import holdout_indices
from plugin.losses import nt_xent
from plugin.render import orthogonal_views
from plugin.render.depth_renderer import CLIP2POINT_ENCODING

TINY = {"NAME": "CLIP2Point", "clip": {"name": "tiny-clip-test", "pretrained": "none"}}


def _model(**overrides) -> torch.nn.Module:
    cfg = EasyConfig()
    cfg.update(copy.deepcopy({**TINY, **overrides}))
    return build_model_from_cfg(cfg)


def _batch(batch: int = 4, seed: int = 0) -> dict:
    """Clouds in the unit sphere seen by the first ``batch`` orthogonal cameras; RGB views at 48 px (resized to 32)."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(batch, 256, 3, generator=g) * 1.2 - 0.6
    pos[:, :, 0] *= torch.linspace(0.3, 1.0, batch).view(batch, 1)          # distinct shapes per cloud
    view, proj = orthogonal_views()
    return {"pos": pos, "img": torch.randn(batch, 3, 48, 48, generator=g), "view": view[:batch], "proj": proj[:batch]}


def test_frozen_image_encoder_and_trainable_depth_encoder_and_sigma():
    torch.manual_seed(0)
    model = _model()
    frozen = list(model.clip.model.parameters())
    assert frozen and not any(p.requires_grad for p in frozen)
    assert not any(k.startswith("clip.") for k in model.state_dict())         # frozen CLIP stays out of checkpoints
    assert model.param_groups() == []                                       # E_d and sigma all train with lr
    loss, logs = model(_batch())
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert set(logs) == {"l_intra", "l_cross", "sigma", "loss"} and logs["sigma"] == pytest.approx(1.0)
    # Eq. 7 at sigma = 1: L = L_intra + L_cross + log 2
    assert logs["loss"] == pytest.approx(logs["l_intra"] + logs["l_cross"] + torch.log(torch.tensor(2.0)).item(),
                                         rel=1e-5)
    loss.backward()
    assert all(p.grad is None for p in frozen)
    assert sum(float(p.grad.abs().sum()) for p in model.depth_encoder.parameters()) > 0
    assert float(model.criterion.log_sigma.grad.abs()) > 0


def test_depth_maps_come_from_the_samples_camera_at_the_jittered_distance():
    model = _model()
    data = _batch()
    with torch.no_grad():
        own = model.render_from(data["pos"], data["view"], data["proj"], torch.ones(4))
        fixed = model.renderer(data["pos"])                  # orthogonal_corner10 starts with the 6 orthogonal ones
        far = model.render_from(data["pos"], data["view"], data["proj"], torch.full((4,), 1.1))
        background = model.renderer.to_image(torch.full((1, 1, 1), float("inf")))[0, 0, 0]
    assert own.shape == (4, 3, 32, 32) and model.renderer.num_views == 10
    for i in range(4):
        assert torch.equal(own[i], fixed[i, i])
    covered_near, covered_far = (own[:, 0] != background).sum(), (far[:, 0] != background).sum()
    assert covered_far < covered_near                                         # farther camera: smaller silhouette


def test_cross_only_ablation_freezes_sigma():
    model = _model(loss={"cross_only": True})
    loss, logs = model(_batch())
    assert loss.item() == pytest.approx(logs["l_cross"], rel=1e-6)
    loss.backward()
    assert model.criterion.log_sigma.grad is None


def test_cross_only_renders_one_depth_map_at_the_original_distance():
    model, data = _model(loss={"cross_only": True}), _batch()
    losses = []
    for seed in (0, 1):                                                       # no distance jitter to draw
        torch.manual_seed(seed)
        losses.append(model(data)[0].detach())
    with torch.no_grad():
        depth = model.render_from(data["pos"], data["view"], data["proj"], torch.ones(4))    # scale 1: d itself
        expected = nt_xent(model.depth_encoder(depth), model.encode_image(data["img"]), 0.7)  # Sec. 5.6
    torch.testing.assert_close(losses[0], expected)
    torch.testing.assert_close(losses[1], expected)


def test_defaults_are_the_authors_encoding_and_the_10_view_validation():
    model = _model()
    assert model.renderer.encoding == CLIP2POINT_ENCODING == "clip2point_release"
    assert model.renderer.views == "orthogonal_corner10" and not model.renderer.near_bright
    assert _model(render={"encoding": "near_bright"}).renderer.near_bright
    with pytest.raises(ConfigError, match="encoding"):
        _model(render={"encoding": "sepia"})


def test_a_few_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model, data = _model(), _batch(seed=1)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    image_before = copy.deepcopy(model.clip.visual.state_dict())

    def fixed_loss() -> float:
        torch.manual_seed(123)                                                # same distance draws each time
        with torch.no_grad():
            return model(data)[0].item()

    start = fixed_loss()
    for _ in range(15):
        loss, _ = model(data)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert fixed_loss() < start - 0.05
    assert all(torch.equal(v, model.clip.visual.state_dict()[k]) for k, v in image_before.items())


def test_export_loads_into_a_fresh_visual_tower(tmp_path):
    torch.manual_seed(0)
    model = _model()
    with torch.no_grad():
        for p in model.depth_encoder.parameters():
            p.add_(0.01 * torch.randn_like(p))                                # differ from E_i and a fresh init
    export = model.export_state()
    assert set(export) == {DEPTH_ENCODER_KEY, "clip"} and export["clip"]["name"] == "tiny-clip-test"
    torch.save(export, tmp_path / "ckpt.pth")
    fresh = load_clip("tiny-clip-test", None).visual
    images = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(fresh(images), model.depth_encoder(images))
    load_depth_encoder(fresh, str(tmp_path / "ckpt.pth"))
    torch.testing.assert_close(fresh(images), model.depth_encoder(images))


def test_validation_logits_are_eq11_on_the_depth_encoder():
    model = _model()
    pos = _batch()["pos"]
    logits = model.validation_logits(pos, ["cube", "chair", "lamp"])
    with torch.no_grad():
        views = model.renderer(pos)
        features = model.depth_encoder(views.flatten(0, 1)).view(4, model.renderer.num_views, -1)
    expected = zero_shot_logits(features, model.text_features(["cube", "chair", "lamp"]))
    assert logits.shape == (4, 3)
    torch.testing.assert_close(logits, expected)


def test_lamb_groups_keep_weight_decay_off_sigma_and_biases():
    model = _model()
    cfg = EasyConfig()
    cfg.update({"lr": 6e-3, "lr_image": None, "optimizer": {"NAME": "lamb", "weight_decay": 1e-4}})
    optimizer = build_grouped_optimizer(cfg, model)
    assert type(optimizer).__name__ == "Lamb"
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(decay) == len(trainable) == sum(len(g["params"]) for g in optimizer.param_groups)
    assert decay[id(model.criterion.log_sigma)] == 0.0
    assert decay[id(model.depth_encoder.conv1.weight)] == pytest.approx(1e-4)
    assert all(g["lr"] == pytest.approx(6e-3) for g in optimizer.param_groups)


def test_moves_reach_the_frozen_clip_and_bad_config_is_refused():
    model = _model().double()
    assert next(model.clip.model.parameters()).dtype == torch.float64
    with pytest.raises(ConfigError, match="model.render.image_size"):
        _model(render={"image_size": 64})
    with pytest.raises(ConfigError, match="distance_jitter"):
        _model(distance_jitter=[1.1, 0.9])


def test_holdout_is_seeded_disjoint_and_complete():
    keep, held = holdout_indices(20, 0.25, seed=3)
    assert len(held) == 5 and sorted(keep + held) == list(range(20))
    assert holdout_indices(20, 0.25, seed=3) == (keep, held) and holdout_indices(20, 0.25, seed=4) != (keep, held)
    with pytest.raises(ConfigError, match="pretrain.holdout"):
        holdout_indices(20, 1.0, seed=0)
