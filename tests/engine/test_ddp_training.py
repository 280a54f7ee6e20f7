"""The training loop and the ``train`` mode under DDP: two Gloo processes on CPU, as ``torchrun`` starts them."""
import functools
import json
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close
from torch.utils.data import DataLoader, TensorDataset

from plugin.engine import distributed
from plugin.engine.loop import LoopSettings, Selection, TrainingLoop
from .conftest import DGCNN_CFG, only_run, tiny_overrides
from .ddp import WORLD, needs_gloo, run_ranks

BATCH = 4  # per process; the one-process reference reads WORLD * BATCH


class _Constant:
    """OpenPoints' scheduler interface with a constant learning rate."""

    def step(self, epoch):
        pass


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))  # no BatchNorm


def _samples() -> TensorDataset:
    generator = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(8 * WORLD * BATCH, 5, generator=generator),
                         torch.randint(0, 3, (8 * WORLD * BATCH,), generator=generator))


def _loop_epochs(ctx: distributed.DistContext, batch_size: int) -> dict:
    """Two epochs of :class:`TrainingLoop` in dataset order; the weights after every update and the epoch losses."""
    model = _mlp()
    net = distributed.wrap_model(model, ctx, torch.device("cpu"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = distributed.distributed_loader(DataLoader(_samples(), batch_size=batch_size), ctx, shuffle=False, seed=0)
    weights = []

    def step(batch):
        x, y = batch
        return torch.nn.functional.cross_entropy(net(x), y), {}

    loop = TrainingLoop(net, optimizer, _Constant(), LoopSettings(epochs=2, amp="off"), torch.device("cpu"), step,
                        save=lambda *args: None, selection=Selection(None))
    original = loop._update

    def update(epoch, fraction):
        original(epoch, fraction)
        weights.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))

    loop._update = update
    losses = [loop.train_epoch(loader, epoch)["loss"] for epoch in (1, 2)]
    return {"weights": torch.stack(weights), "losses": losses}


@needs_gloo
def test_the_loop_under_ddp_matches_one_process_at_the_global_batch(tmp_path):
    ranks = run_ranks(tmp_path, functools.partial(_loop_epochs, batch_size=BATCH))
    single = _loop_epochs(distributed.DistContext(), batch_size=WORLD * BATCH)
    assert torch.equal(ranks[0]["weights"], ranks[1]["weights"])          # identical weights after each update
    assert ranks[0]["losses"] == ranks[1]["losses"]                        # the epoch loss is averaged over ranks
    assert_close(ranks[0]["weights"], single["weights"], rtol=1e-5, atol=1e-6)
    assert ranks[0]["losses"] == pytest.approx(single["losses"], rel=1e-5)


def _train_mode(ctx: distributed.DistContext, args: list) -> dict:
    """``mode=train`` (or ``resume``) of the tiny DGCNN config; the parameters after every update and the figures."""
    from plugin.engine import load_config, runner_for

    sums = []
    original = TrainingLoop._update

    def update(self, epoch, fraction):
        original(self, epoch, fraction)
        sums.append(torch.cat([p.detach().reshape(-1) for p in self.model.parameters()]).double())

    TrainingLoop._update = update
    cfg = load_config(DGCNN_CFG, args)
    runner = runner_for(cfg.mode)(cfg)
    metrics = runner.run()
    return {"params": torch.stack(sums), "metrics": metrics}


@needs_gloo
def test_train_mode_under_ddp_writes_one_run_that_a_single_process_loads_and_resumes(tiny_modelnet, tmp_path, main):
    root = tmp_path / "log"
    args = tiny_overrides(tiny_modelnet, root, epochs=1)
    ranks = run_ranks(tmp_path, functools.partial(_train_mode, args=args))
    assert torch.equal(ranks[0]["params"], ranks[1]["params"])            # identical weights after each update
    run = only_run(root)                                                   # only rank 0 made a folder
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["processes"] == WORLD and metrics["selected_by"] == "holdout"
    # the test predictions of both ranks are gathered: every rank reports the figures of the whole split
    assert ranks[0]["metrics"]["test_oa"] == ranks[1]["metrics"]["test_oa"] == metrics["test_oa"]
    assert "run.lock" not in {p.name for p in run.iterdir()}

    # the DDP checkpoint is a plain one: a single process tests it (same weights, same 12 test clouds)
    assert main(["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, tmp_path / "test"), "mode=test",
                 f"load_path={run / 'ckpt_best.pth'}"]) == 0
    single = json.loads((only_run(tmp_path / "test") / "metrics.json").read_text())
    assert abs(single["test_oa"] - metrics["test_oa"]) <= 100 / 12 + 1e-9  # at most one cloud flips on a near tie

    # and DDP resumes it
    ranks = run_ranks(tmp_path, functools.partial(_train_mode, args=["mode=resume", f"run_dir={run}", "epochs=2"]))
    assert torch.equal(ranks[0]["params"], ranks[1]["params"])
    assert torch.load(run / "ckpt_latest.pth", weights_only=True)["epoch"] == 2
    assert "resumed after epoch 1" in (run / "log.txt").read_text()


def _svm_mode(ctx: distributed.DistContext, args: list) -> str:
    from plugin.engine import load_config, runner_for
    from plugin.errors import ConfigError

    cfg = load_config(DGCNN_CFG, args)
    try:
        runner_for(cfg.mode)(cfg)
    except ConfigError as e:
        return str(e)
    return ""


@needs_gloo
def test_a_mode_without_ddp_is_refused_under_torchrun(tiny_modelnet, tmp_path):
    messages = run_ranks(tmp_path, functools.partial(_svm_mode, args=[*tiny_overrides(tiny_modelnet, tmp_path),
                                                                        "mode=svm"]))
    assert all("mode=svm runs in one process: start it with python tools/main.py, not torchrun" in m
               for m in messages)
    assert not Path(tmp_path / "modelnet40").exists()
