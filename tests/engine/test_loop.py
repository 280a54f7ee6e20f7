"""The training loop itself (:mod:`plugin.engine.loop`) on tiny models and synthetic tensors: gradient
accumulation, clipping, the scheduler's epochs, NaN detection, hook order, checkpoint selection, resume,
mixed precision and the data-wait figure; and the ``ema`` block through ``tools/main.py``."""
import io
import json
import math
import time
from typing import Any, Dict, List

import pytest
import torch
from openpoints.utils import EasyConfig
from torch.nn import functional as F
from torch.testing import assert_close
from torch.utils.data import DataLoader, TensorDataset

from plugin.engine.builders import build_scheduler
from plugin.engine.hooks import EmaHook
from plugin.engine.loop import Hook, LoopSettings, Selection, TrainingLoop, resolve_amp
from plugin.errors import ConfigError, TrainingDivergedError
from plugin.io import restore_rng_state, rng_state_for_checkpoint
from plugin.models.ema import ModelEma

from .conftest import DGCNN_CFG, only_run, tiny_overrides

CPU = torch.device("cpu")


class RecordingScheduler:
    """OpenPoints' scheduler interface (``step(epoch)``) that records the epochs it is given."""

    def __init__(self):
        self.epochs: List[float] = []

    def step(self, epoch: float) -> None:
        self.epochs.append(epoch)


class Recorder(Hook):
    """Appends every hook call to ``events``; ``state_dict`` counts the updates it saw."""

    name = "recorder"

    def __init__(self, events: List[tuple]):
        self.events, self.steps = events, 0

    def before_epoch(self, loop, epoch):
        self.events.append(("before_epoch", epoch))

    def before_step(self, loop, batch):
        self.events.append(("before_step",))

    def after_step(self, loop, logs):
        self.steps += 1
        self.events.append(("after_step", loop.updates))

    def before_validation(self, loop, epoch):
        self.events.append(("before_validation", epoch))

    def after_validation(self, loop, epoch, metrics):
        metrics["hook_figure"] = 7.0  # a hook may extend the figures
        self.events.append(("after_validation", epoch))

    def after_epoch(self, loop, epoch, logs):
        self.events.append(("after_epoch", epoch, sorted(logs)))

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


class Stateless(Hook):
    name = "stateless"


def mlp(seed: int = 0, dropout: float = 0.0) -> torch.nn.Module:
    """A model without BatchNorm (its output for a sample does not depend on the rest of the batch)."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Dropout(dropout),
                               torch.nn.Linear(8, 3))


def samples(n: int, seed: int = 1) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    return TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long())  # an easy, learnable labelling


def classify(model: torch.nn.Module):
    """The step function of a classifier: the mean cross-entropy of a batch ``(x, y)``."""
    def step(batch):
        x, y = batch
        return F.cross_entropy(model(x), y), {}
    return step


def make_loop(model, settings: LoopSettings, *, optimizer=None, scheduler=None, step=None, save=None,
              selection=None, validate=None, hooks=()) -> TrainingLoop:
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.1)
    return TrainingLoop(model, optimizer, scheduler or RecordingScheduler(), settings, CPU, step or classify(model),
                        save or (lambda *args: None), selection or Selection(None), validate, hooks)


def flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


# ---- gradient accumulation ---------------------------------------------------------------------------

def _accumulated(batch_size: int, accumulate: int, n: int, epochs: int = 2) -> torch.nn.Module:
    model = mlp()
    loader = DataLoader(samples(n), batch_size=batch_size, shuffle=False)
    make_loop(model, LoopSettings(epochs=epochs, grad_accum_steps=accumulate, amp="off")).run(loader)
    return model


def test_accumulating_two_batches_equals_one_batch_of_twice_the_size():
    start = flat(mlp())
    accumulated = flat(_accumulated(batch_size=4, accumulate=2, n=32))
    large = flat(_accumulated(batch_size=8, accumulate=1, n=32))
    small = flat(_accumulated(batch_size=4, accumulate=1, n=32))
    assert not torch.allclose(accumulated, start)                   # it trained
    assert_close(accumulated, large, rtol=1e-5, atol=1e-6)          # mean of two half-batch means = full-batch mean
    assert not torch.allclose(small, large, rtol=1e-3, atol=1e-4)   # the comparison can tell the settings apart


def test_an_incomplete_last_accumulation_group_matches_the_large_batch():
    accumulated = flat(_accumulated(batch_size=4, accumulate=2, n=20, epochs=1))  # batches 4,4 | 4,4 | 4
    large = flat(_accumulated(batch_size=8, accumulate=1, n=20, epochs=1))        # batches 8 | 8 | 4
    assert_close(accumulated, large, rtol=1e-5, atol=1e-6)


def test_updates_count_optimizer_updates_including_an_odd_last_batch():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []
    original = optimizer.step
    optimizer.step = lambda *a, **k: (calls.append(1), original(*a, **k))[1]
    events: List[tuple] = []
    loop = make_loop(model, LoopSettings(epochs=2, grad_accum_steps=2, amp="off"), optimizer=optimizer,
                     hooks=[Recorder(events)])
    loop.run(DataLoader(samples(20), batch_size=4))  # 5 batches per epoch: updates after batches 2, 4 and 5
    assert loop.updates == 6 and len(calls) == 6
    assert [e[1] for e in events if e[0] == "after_step"] == [1, 2, 3, 4, 5, 6]
    assert sum(e[0] == "before_step" for e in events) == 10
    assert all(p.grad is None for p in model.parameters())  # nothing accumulated is carried into the next epoch


def test_grad_accum_steps_below_one_is_refused():
    with pytest.raises(ConfigError, match="grad_accum_steps is -1"):
        LoopSettings.from_cfg({"epochs": 1, "grad_accum_steps": -1})


# ---- clipping ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("clip", [None, 0.01])
def test_a_clipped_step_is_sgd_on_the_clipped_gradient(clip):
    model = torch.nn.Linear(3, 2)
    weight, bias = model.weight.detach().clone(), model.bias.detach().clone()
    x = torch.tensor([[3.0, 4.0, 0.0]])
    # loss = sum(W x + b): dL/dW = [x; x], dL/db = [1, 1], so the gradient norm is sqrt(2 * 25 + 2)
    grad_w, grad_b = x.repeat(2, 1), torch.ones(2)
    norm = math.sqrt(52.0)
    scale = 1.0 if clip is None else clip / (norm + 1e-6)  # clip_grad_norm_'s coefficient
    lr = 0.5
    loop = make_loop(model, LoopSettings(epochs=1, grad_norm_clip=clip, amp="off"),
                     optimizer=torch.optim.SGD(model.parameters(), lr=lr),
                     step=lambda batch: (model(batch).sum(), {}))
    loop.train_epoch([x], epoch=1)
    assert_close(model.weight.detach(), weight - lr * scale * grad_w)
    assert_close(model.bias.detach(), bias - lr * scale * grad_b)
    if clip is not None:
        step = torch.cat([(model.weight.detach() - weight).reshape(-1), model.bias.detach() - bias])
        assert step.norm().item() == pytest.approx(lr * clip, rel=1e-4)


# ---- scheduler ---------------------------------------------------------------------------------------

def test_per_update_scheduling_gets_the_fractional_epochs():
    scheduler = RecordingScheduler()
    loop = make_loop(mlp(), LoopSettings(epochs=4, grad_accum_steps=2, sched_on_epoch=False, amp="off"),
                     scheduler=scheduler)
    loop.run(DataLoader(samples(20), batch_size=4), start_epoch=3)  # 5 batches: updates at 2/5, 4/5 and 5/5
    assert scheduler.epochs == pytest.approx([2, 2.4, 2.8, 3.0, 3.4, 3.8, 4.0])


def test_per_epoch_scheduling_gets_the_start_then_every_epoch():
    scheduler = RecordingScheduler()
    loop = make_loop(mlp(), LoopSettings(epochs=4, amp="off"), scheduler=scheduler)
    loop.run(DataLoader(samples(12), batch_size=4), start_epoch=2)
    assert scheduler.epochs == [1, 2, 3, 4]


@pytest.mark.parametrize("on_epoch", [False, True])
def test_openpoints_cosine_changes_the_lr_within_an_epoch_only_per_update(on_epoch):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = EasyConfig({"sched": "cosine", "epochs": 2, "lr": 0.1, "warmup_epochs": 0, "min_lr": None, "t_max": None})
    scheduler = build_scheduler(cfg, optimizer)
    lrs: List[float] = []

    class LrProbe(Hook):
        def after_step(self, loop, logs):
            lrs.append(loop.optimizer.param_groups[0]["lr"])

    loop = make_loop(model, LoopSettings(epochs=2, sched_on_epoch=on_epoch, amp="off"), optimizer=optimizer,
                     scheduler=scheduler, hooks=[LrProbe()])
    loop.run(DataLoader(samples(16), batch_size=4))  # 4 updates per epoch

    def cosine(t):  # OpenPoints' cosine: min_lr = lr / 1000 when unset, period = epochs
        return 1e-4 + 0.5 * (0.1 - 1e-4) * (1 + math.cos(math.pi * t / 2))

    if on_epoch:  # lr after the update: constant within an epoch
        assert lrs == pytest.approx([cosine(0)] * 4 + [cosine(1)] * 4, rel=1e-9)
    else:         # lr after the update at epoch - 1 + i / 4
        assert lrs == pytest.approx([cosine(e - 1 + i / 4) for e in (1, 2) for i in range(1, 5)], rel=1e-9)
        assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_the_warm_up_starts_at_warmup_lr_and_rises_linearly_to_lr():
    optimizer = torch.optim.SGD(mlp().parameters(), lr=1e-3)
    cfg = EasyConfig({"sched": "cosine", "epochs": 100, "lr": 1e-3, "warmup_epochs": 30, "warmup_lr": 1e-7,
                      "min_lr": None, "t_max": None})
    scheduler = build_scheduler(cfg, optimizer)
    for epoch, expected in ((0, 1e-7), (15, 1e-7 + 15 * (1e-3 - 1e-7) / 30)):  # No Captions' 1e-7 -> 1e-3 ramp
        scheduler.step(epoch)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-9)


# ---- NaN ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_loss_stops_the_run_before_that_epoch_is_saved(bad):
    model = mlp()
    calls, saved = [0], []
    base = classify(model)

    def step(batch):
        calls[0] += 1
        loss, logs = base(batch)
        return (loss * bad if calls[0] == 7 else loss), logs  # epoch 2, batch 3 (4 batches per epoch)

    loop = make_loop(model, LoopSettings(epochs=3, amp="off"), step=step,
                     save=lambda name, epoch, state: saved.append((name, epoch)))
    with pytest.raises(TrainingDivergedError, match=r"at epoch 2, batch 3\b") as error:
        loop.run(DataLoader(samples(16), batch_size=4))
    assert "ckpt_latest.pth holds epoch 1" in str(error.value) and "\n" not in str(error.value)
    assert saved == [("ckpt_latest.pth", 1)]  # nothing of epoch 2 (Selection(None) saves best at the last epoch)
    assert torch.isfinite(flat(model)).all() and loop.updates == 6  # the bad batch updated nothing


# ---- hooks -------------------------------------------------------------------------------------------

def test_hooks_are_called_in_order_around_steps_validation_and_saves():
    events: List[tuple] = []
    loop = make_loop(mlp(), LoopSettings(epochs=2, amp="off"), hooks=[Recorder(events), Stateless()],
                     selection=Selection("val", "max"),
                     validate=lambda epoch: (events.append(("validate", epoch)), {"val": float(epoch)})[1],
                     save=lambda name, epoch, state: events.append(("save", name, epoch)))
    logs = loop.run(DataLoader(samples(12), batch_size=4))  # 3 batches per epoch
    expected = []
    for epoch in (1, 2):
        expected += [("before_epoch", epoch)]
        for update in range(3 * epoch - 2, 3 * epoch + 1):
            expected += [("before_step",), ("after_step", update)]
        expected += [("before_validation", epoch), ("validate", epoch), ("after_validation", epoch),
                     ("after_epoch", epoch, ["data_wait", "hook_figure", "loss", "val"]),
                     ("save", "ckpt_best.pth", epoch), ("save", "ckpt_latest.pth", epoch)]
    assert events == expected
    assert logs["val"] == 2.0 and logs["hook_figure"] == 7.0


def test_validation_runs_every_val_freq_epochs_and_at_the_last():
    validated = []
    loop = make_loop(mlp(), LoopSettings(epochs=5, val_freq=2, amp="off"),
                     validate=lambda epoch: (validated.append(epoch), {"val": 0.0})[1])
    loop.run([next(iter(DataLoader(samples(4), batch_size=4)))])
    assert validated == [2, 4, 5]


def test_a_hooks_state_is_in_the_loop_state_and_restored():
    saved: Dict[int, Dict[str, Any]] = {}
    loop = make_loop(mlp(), LoopSettings(epochs=2, amp="off"), hooks=[Recorder([]), Stateless()],
                     save=lambda name, epoch, state: saved.setdefault(epoch, state) if "latest" in name else None)
    loop.run(DataLoader(samples(12), batch_size=4))
    state = loop.state_dict()
    assert state["hooks"] == {"recorder": {"steps": 6}}  # a hook without state is left out
    assert saved[1]["hooks"] == {"recorder": {"steps": 3}} and saved[1]["updates"] == 3
    fresh = Recorder([])
    resumed = make_loop(mlp(), LoopSettings(epochs=2, amp="off"), hooks=[fresh, Stateless()])
    resumed.load_state_dict(saved[1])
    assert fresh.steps == 3 and resumed.updates == 3


# ---- selection ---------------------------------------------------------------------------------------

def _best_saves(selection: Selection, figures: List[Dict[str, float]], val_freq: int = 1) -> List[int]:
    saves = []
    loop = make_loop(mlp(), LoopSettings(epochs=len(figures), val_freq=val_freq, amp="off"), selection=selection,
                     validate=lambda epoch: dict(figures[epoch - 1]),
                     save=lambda name, epoch, state: saves.append(epoch) if name == "ckpt_best.pth" else None)
    loop.run([next(iter(DataLoader(samples(4), batch_size=4)))])
    return saves


def test_selection_saves_best_only_when_the_figure_improves():
    selection = Selection("val", "max")
    assert _best_saves(selection, [{"val": 0.5}, {"val": 0.9}, {"val": 0.6}, {"val": 0.7}]) == [1, 2]
    assert selection.best_epoch == 2 and selection.best == 0.9


def test_min_selection_keeps_the_lowest():
    selection = Selection("val", "min")
    assert _best_saves(selection, [{"val": 3.0}, {"val": 1.0}, {"val": 2.0}]) == [1, 2]
    assert selection.best_epoch == 2 and selection.best == 1.0


def test_selection_without_a_key_saves_best_at_the_last_epoch_only():
    selection = Selection(None)
    assert _best_saves(selection, [{}, {}, {}]) == [3]
    assert selection.best_epoch == 3 and math.isfinite(selection.best)  # the last epoch's loss


def test_an_epoch_without_the_figure_is_never_chosen():
    # validated at epochs 2 and 4 only: epoch 1, the first and with no figure at all, is not chosen
    selection = Selection("val", "max")
    assert _best_saves(selection, [{"val": 9.0}, {"val": 0.5}, {"val": 9.0}, {"val": 0.4}], val_freq=2) == [2]
    assert selection.best_epoch == 2
    assert not Selection("val").update(1, {"loss": 0.1}, last=True)


def test_selection_state_round_trip():
    selection = Selection("val", "max")
    selection.update(1, {"val": 0.8}, last=False)
    restored = Selection("val", "max")
    restored.load_state_dict(selection.state_dict())
    assert restored.state_dict() == {"best": 0.8, "best_epoch": 1}
    assert not restored.update(2, {"val": 0.7}, last=False)  # worse than the restored best
    assert restored.update(3, {"val": 0.85}, last=True) and restored.best_epoch == 3


# ---- resume ------------------------------------------------------------------------------------------

class Killed(Exception):
    """The process dying right after a checkpoint was written."""


def _resumable_run(kill_after: int = 0, resume_from: bytes = None, restore_rng: bool = True):
    """Epochs of a shuffled, dropout, momentum, per-update cosine, accumulating, EMA run of 4 epochs.

    Returns (model, EMA, loop, the bytes of the last ``ckpt_latest.pth``)."""
    torch.manual_seed(123 if resume_from else 0)  # a restarted process starts from another RNG state
    model = mlp(seed=0, dropout=0.3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    cfg = EasyConfig({"sched": "cosine", "epochs": 4, "lr": 0.1, "warmup_epochs": 0, "min_lr": None, "t_max": None})
    scheduler = build_scheduler(cfg, optimizer)
    state = torch.load(io.BytesIO(resume_from), weights_only=True) if resume_from else None
    if state is not None:  # EpochRunner.restore's order
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if restore_rng:
            restore_rng_state(state["rng"])
    ema = ModelEma(model, 0.9)
    latest = [b""]

    def save(name, epoch, loop_state):
        if name != "ckpt_latest.pth":
            return
        buffer = io.BytesIO()
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng_state_for_checkpoint(),
                    "epoch": epoch, "loop": loop_state}, buffer)
        latest[0] = buffer.getvalue()
        if epoch == kill_after:
            raise Killed

    loop = make_loop(model, LoopSettings(epochs=4, grad_accum_steps=2, sched_on_epoch=False, amp="off"),
                     optimizer=optimizer, scheduler=scheduler, save=save, hooks=[EmaHook(ema)])
    if state is not None:
        loop.load_state_dict(state["loop"])
    loader = DataLoader(samples(20), batch_size=4, shuffle=True)  # the shuffle draws from the global RNG
    try:
        loop.run(loader, start_epoch=state["epoch"] + 1 if state else 1)
    except Killed:
        pass
    return model, ema, loop, latest[0]


def test_a_resumed_run_continues_bit_for_bit():
    straight_model, straight_ema, straight_loop, _ = _resumable_run()
    *_, checkpoint = _resumable_run(kill_after=2)
    model, ema, loop, _ = _resumable_run(resume_from=checkpoint)
    assert loop.updates == straight_loop.updates == 12
    for key, value in straight_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    for key, value in straight_ema.module.state_dict().items():
        assert torch.equal(ema.module.state_dict()[key], value), key
    assert ema.updates == straight_ema.updates == 12
    # the comparison is sensitive to the RNG stream (shuffle and dropout): without restoring it, it differs
    drifted, *_ = _resumable_run(resume_from=checkpoint, restore_rng=False)
    assert not torch.equal(flat(drifted), flat(straight_model))


# ---- mixed precision ---------------------------------------------------------------------------------

@pytest.mark.parametrize("amp, dtype", [("auto", None), (None, None), ("bf16", torch.bfloat16),
                                        ("fp16", torch.float16), ("off", None), (False, None)])
def test_resolve_amp_on_cpu(amp, dtype):
    assert resolve_amp(amp, CPU) == dtype


def test_an_unknown_amp_is_one_sentence_naming_the_choices():
    with pytest.raises(ConfigError) as error:
        resolve_amp("fp8", CPU)
    message = str(error.value)
    assert "'fp8'" in message and "auto, bf16, fp16, off" in message
    assert "\n" not in message and message.endswith(".") and message.count(". ") == 0


def test_yaml_false_amp_reads_as_off():
    assert LoopSettings.from_cfg({"epochs": 1, "amp": False}).amp == "off"
    assert LoopSettings.from_cfg({"epochs": 1}).amp == "auto"


def _easy_run(amp: str, epochs: int = 6):
    model = mlp(seed=2)
    dtypes = []
    model[0].register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    loop = make_loop(model, LoopSettings(epochs=epochs, amp=amp), optimizer=torch.optim.SGD(model.parameters(), lr=0.5))
    losses = [loop.train_epoch(DataLoader(samples(64), batch_size=16), epoch)["loss"] for epoch in range(1, epochs + 1)]
    return model, loop, losses, dtypes


def test_bf16_on_cpu_trains_under_autocast():
    model, loop, losses, dtypes = _easy_run("bf16")
    assert set(dtypes) == {torch.bfloat16}                   # the first layer's output was computed in bf16
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights stay float32
    assert losses[-1] < 0.7 * losses[0], losses
    assert not loop.scaler.is_enabled()
    _, _, _, full = _easy_run("off", epochs=1)
    assert set(full) == {torch.float32}                      # the dtype probe can tell


def test_fp16_on_cpu_uses_a_grad_scaler_whose_state_is_saved():
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            assert torch.nn.functional.linear(torch.ones(1, 2), torch.ones(1, 2)).dtype == torch.float16
        torch.amp.GradScaler("cpu")
    except (RuntimeError, AssertionError, AttributeError, TypeError) as error:
        pytest.skip(f"this torch has no CPU fp16 autocast or CPU GradScaler ({error})")
    model, loop, losses, dtypes = _easy_run("fp16", epochs=2)
    assert set(dtypes) == {torch.float16} and loop.scaler.is_enabled()
    assert all(math.isfinite(loss) for loss in losses) and torch.isfinite(flat(model)).all()
    scaler = loop.state_dict()["scaler"]
    # no overflow at scale 2^16 on this problem: every update grew the tracker, none reached growth_interval
    assert scaler["scale"] == 65536.0 and scaler["_growth_tracker"] == loop.updates == 8
    resumed = make_loop(mlp(), LoopSettings(epochs=2, amp="fp16"))
    resumed.load_state_dict(loop.state_dict())
    assert resumed.scaler.state_dict() == scaler


# ---- data wait ---------------------------------------------------------------------------------------

class SlowLoader:
    """Four batches, each taking ``delay`` seconds to load."""

    def __init__(self, delay: float):
        self.delay, self.batches = delay, list(DataLoader(samples(16), batch_size=4))

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            time.sleep(self.delay)
            yield batch


def test_data_wait_is_the_share_of_the_epoch_spent_loading():
    model = mlp()
    loop = make_loop(model, LoopSettings(epochs=1, amp="off"))
    slow_data = loop.train_epoch(SlowLoader(0.05), epoch=1)["data_wait"]
    assert 0.5 < slow_data <= 1.0

    base = classify(model)

    def slow_step(batch):
        time.sleep(0.05)
        return base(batch)

    loop = make_loop(model, LoopSettings(epochs=1, amp="off"), step=slow_step)
    slow_step_wait = loop.train_epoch(SlowLoader(0.0), epoch=1)["data_wait"]
    assert 0.0 <= slow_step_wait < 0.5


# ---- EMA through tools/main.py -------------------------------------------------------------------------

EMA_BLOCK = "ema={'decay': 0.9}"  # a whole block as a Python literal; ema.decay=... needs ema to be a mapping


def _ema_train(main, data, root, epochs):
    assert main(["--cfg", DGCNN_CFG, *tiny_overrides(data, root, epochs=epochs), EMA_BLOCK]) == 0
    return only_run(root)


def test_the_ema_block_trains_scores_and_saves_the_hand_average(tiny_modelnet, tmp_path, main, monkeypatch):
    from plugin.engine.modes import train as train_mode

    start, trained = [], []
    build_ema = train_mode.build_ema

    def recording_build_ema(cfg, model, *args, **kwargs):
        start.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return build_ema(cfg, model, *args, **kwargs)

    after_step = EmaHook.after_step

    def recording_after_step(self, loop, logs):
        trained.append({k: v.detach().clone() for k, v in loop.model.state_dict().items()})
        after_step(self, loop, logs)

    monkeypatch.setattr(train_mode, "build_ema", recording_build_ema)
    monkeypatch.setattr(EmaHook, "after_step", recording_after_step)
    run = _ema_train(main, tiny_modelnet, tmp_path / "straight", epochs=2)
    monkeypatch.undo()

    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["ema_test_oa"] <= 100.0 and 0.0 <= metrics["ema_test_macc"] <= 100.0
    state = torch.load(run / "ckpt_latest.pth", weights_only=True)
    ema = state["loop"]["hooks"]["ema"]
    assert ema["updates"] == state["loop"]["updates"] == len(trained) > 0 and ema["momentum"] == 0.9
    assert any(not torch.equal(ema["module"][k], v) for k, v in state["model"].items() if v.is_floating_point())
    hand = start[0]
    for weights in trained:  # ema = m * ema + (1 - m) * w for floating tensors, integer buffers copied
        hand = {k: 0.9 * hand[k] + 0.1 * w if w.is_floating_point() else w for k, w in weights.items()}
    assert set(hand) == set(ema["module"])
    for key, value in hand.items():
        assert_close(ema["module"][key], value, rtol=1e-5, atol=1e-6, msg=key)

    # a 1-epoch run resumed to 2 epochs continues the same average, bit for bit (same CPU code path)
    root = tmp_path / "resumed"
    first = _ema_train(main, tiny_modelnet, root, epochs=1)
    assert main(["--cfg", DGCNN_CFG, f"root_dir={root}", "mode=resume", "epochs=2"]) == 0
    resumed = torch.load(first / "ckpt_latest.pth", weights_only=True)
    assert resumed["epoch"] == 2
    for key, value in ema["module"].items():
        assert torch.equal(resumed["loop"]["hooks"]["ema"]["module"][key], value), key


def test_the_suggested_plus_override_creates_a_nested_key_under_a_null_block():
    from plugin.engine import load_config

    assert dict(load_config(DGCNN_CFG, ["+ema.decay=0.9"]).ema) == {"decay": 0.9}
