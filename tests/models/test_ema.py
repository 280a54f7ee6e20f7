"""The EMA of a model: momentum schedules, one update against the hand formula, checkpoint round trips,
DDP unwrapping and the config factory."""
import math

import pytest
import torch
from torch import nn

from plugin.errors import BadCheckpointError, ConfigError
from plugin.models.ema import ModelEma, MomentumSchedule, build_ema


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def train_step(model: nn.Module, seed: int) -> None:
    """One SGD step on random data (also moves BatchNorm's running statistics)."""
    torch.manual_seed(seed)
    model.train()
    model(torch.randn(16, 4)).square().mean().backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
            p.grad = None


class FakeDDP(nn.Module):
    """Stands for ``DistributedDataParallel``: the trained module sits under ``.module``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


# --- MomentumSchedule ---

def test_linear_schedule_by_hand():
    schedule = MomentumSchedule(start=0.9, end=0.99, ramp_steps=100, shape="linear")
    assert schedule(0) == pytest.approx(0.9)
    assert schedule(25) == pytest.approx(0.9 + 0.09 * 0.25)
    assert schedule(50) == pytest.approx(0.945)
    assert schedule(100) == pytest.approx(0.99)
    assert schedule(10_000) == pytest.approx(0.99)


def test_cosine_schedule_by_hand():
    schedule = MomentumSchedule(start=0.99, end=0.9998, ramp_steps=1000, shape="cosine")
    assert schedule(0) == pytest.approx(0.99)
    assert schedule(250) == pytest.approx(0.99 + 0.0098 * (1 - math.cos(math.pi / 4)) / 2)
    assert schedule(500) == pytest.approx((0.99 + 0.9998) / 2)
    assert schedule(1000) == pytest.approx(0.9998)
    assert schedule(5000) == pytest.approx(0.9998)
    # half a cosine rises slower than the line at first, faster later
    linear = MomentumSchedule(start=0.99, end=0.9998, ramp_steps=1000)
    assert schedule(100) < linear(100) and schedule(900) > linear(900)


def test_zero_ramp_and_constant_give_end_everywhere():
    assert MomentumSchedule(start=0.5, end=0.9, ramp_steps=0)(0) == pytest.approx(0.9)
    constant = MomentumSchedule.constant(0.999)
    assert [constant(s) for s in (0, 7, 10**6)] == [0.999] * 3


@pytest.mark.parametrize("kwargs, word", [
    (dict(start=1.0, end=0.9), "start"),
    (dict(start=0.9, end=-0.1), "end"),
    (dict(start=0.9, end=0.99, ramp_steps=-1), "ramp_steps"),
    (dict(start=0.9, end=0.99, ramp_steps=2.5), "ramp_steps"),
    (dict(start=0.9, end=0.99, shape="exp"), "shape"),
])
def test_schedule_rejects_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        MomentumSchedule(**kwargs)


def test_schedule_rejects_negative_step():
    with pytest.raises(ValueError, match="step"):
        MomentumSchedule(start=0.9, end=0.99)(-1)


# --- ModelEma ---

def test_one_update_is_the_hand_formula():
    model = small_model()
    ema = ModelEma(model, MomentumSchedule(start=0.9, end=0.99, ramp_steps=10))
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    train_step(model, seed=1)
    ema.update(model, step=5)
    m = 0.9 + 0.09 * 0.5
    assert ema.momentum == pytest.approx(m)
    weights = model.state_dict()
    for key, value in ema.module.state_dict().items():
        if value.is_floating_point():  # parameters and BatchNorm running statistics are averaged
            torch.testing.assert_close(value, m * before[key] + (1 - m) * weights[key])
        else:  # num_batches_tracked is copied
            assert torch.equal(value, weights[key])
    # the update moved the average (the test would pass vacuously if the model had not changed)
    assert not torch.allclose(ema.module[0].weight, before["0.weight"])


def test_exclude_buffers_copies_buffers_and_averages_parameters():
    model = small_model()
    ema = ModelEma(model, 0.5, exclude_buffers=True)
    start = ema.module[1].weight.clone()
    train_step(model, seed=1)
    ema.update(model, step=0)
    assert torch.equal(ema.module[1].running_mean, model[1].running_mean)
    assert torch.equal(ema.module[1].running_var, model[1].running_var)
    torch.testing.assert_close(ema.module[1].weight, 0.5 * start + 0.5 * model[1].weight)


def test_average_is_a_frozen_eval_copy():
    model = small_model()
    ema = ModelEma(model, 0.9)
    assert ema.module is not model and not ema.module.training
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert not ema.module(torch.randn(3, 4)).requires_grad  # no graph: the average receives no gradients
    frozen = ema.module[0].weight.clone()
    train_step(model, seed=1)
    assert torch.equal(ema.module[0].weight, frozen)  # the model moved, the average waits for update()
    ema.update(model, step=0)
    assert not torch.equal(ema.module[0].weight, frozen)


def test_state_dict_round_trip_resumes_bit_identically(tmp_path):
    schedule = MomentumSchedule(start=0.9, end=0.999, ramp_steps=6, shape="cosine")
    model = small_model()
    uninterrupted = ModelEma(model, schedule)
    interrupted = ModelEma(model, schedule)
    for step in range(3):
        train_step(model, seed=step)
        uninterrupted.update(model, step)
        interrupted.update(model, step)
    torch.save(interrupted.state_dict(), tmp_path / "ema.pth")

    resumed = ModelEma(small_model(seed=7), schedule)  # fresh weights, overwritten by the checkpoint
    resumed.load_state_dict(torch.load(tmp_path / "ema.pth"))
    assert resumed.updates == 3 and resumed.momentum == uninterrupted.momentum
    for step in range(3, 9):
        train_step(model, seed=step)
        uninterrupted.update(model, step)
        resumed.update(model, step)
    expected = uninterrupted.module.state_dict()
    for key, value in resumed.module.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert resumed.updates == 9


def test_load_state_dict_rejects_a_foreign_state():
    ema = ModelEma(small_model(), 0.9)
    with pytest.raises(BadCheckpointError, match="module, updates"):
        ema.load_state_dict(small_model().state_dict())


def test_ddp_wrapped_model_is_unwrapped():
    model = small_model()
    wrapped = FakeDDP(model)
    ema = ModelEma(wrapped, 0.5)
    assert isinstance(ema.module, nn.Sequential)
    assert set(ema.module.state_dict()) == set(model.state_dict())  # no "module." prefix
    start = ema.module[0].weight.clone()
    train_step(model, seed=1)
    ema.update(wrapped, step=0)
    torch.testing.assert_close(ema.module[0].weight, 0.5 * start + 0.5 * model[0].weight)


def test_fixed_decay_rejects_out_of_range():
    with pytest.raises(ValueError, match="momentum"):
        ModelEma(small_model(), 1.0)


# --- build_ema ---

def test_build_ema_fixed_decay():
    ema = build_ema({"decay": 0.9998}, small_model())
    assert isinstance(ema, ModelEma)
    assert ema.schedule == MomentumSchedule.constant(0.9998)
    assert ema.momentum == pytest.approx(0.9998)


def test_build_ema_schedule():
    block = {"momentum": {"start": 0.99, "end": 0.9998, "ramp_steps": 1000, "shape": "cosine"},
             "exclude_buffers": True}
    ema = build_ema(block, small_model())
    assert ema.schedule == MomentumSchedule(start=0.99, end=0.9998, ramp_steps=1000, shape="cosine")
    assert ema.schedule(500) == pytest.approx((0.99 + 0.9998) / 2)


@pytest.mark.parametrize("block", [None, False, {"enabled": False, "decay": 0.99}])
def test_build_ema_disabled(block):
    assert build_ema(block, small_model()) is None


@pytest.mark.parametrize("block, match", [
    ({"decy": 0.99}, r"Unknown key ema\.decy: use only decay, device, enabled, exclude_buffers, momentum\."),
    ({"momentum": {"start": 0.9, "end": 0.99, "steps": 5}},
     r"Unknown key ema\.momentum\.steps: use only end, ramp_steps, shape, start\."),
    ({}, "exactly one of ema.decay"),
    ({"decay": 0.99, "momentum": {"start": 0.9, "end": 0.99}}, "exactly one of ema.decay"),
    ({"decay": 1.5}, r"ema\.decay must be a number in \[0, 1\)"),
    ({"momentum": {"start": 0.9, "end": 0.99, "shape": "exp"}}, r"ema\.momentum\.shape must be one of"),
    ({"momentum": {"end": 0.99}}, r"ema\.momentum needs start"),
    ({"momentum": 0.99}, r"ema\.momentum must be a mapping"),
    ({"decay": 0.99, "exclude_buffers": "yes"}, r"ema\.exclude_buffers must be true or false"),
])
def test_build_ema_errors_are_one_sentence(block, match):
    with pytest.raises(ConfigError, match=match) as info:
        build_ema(block, small_model())
    message = str(info.value)
    assert message.endswith(".") and "\n" not in message
