"""plugin.engine.distributed: two Gloo processes on CPU against single-process references.

Each multi-process test runs a module-level scenario in the :data:`WORLD` processes of one process group
(:func:`run_ranks`); the scenarios return what they computed, and the assertions run here, in the test process.
"""
from dataclasses import astuple
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.testing import assert_close
from torch.utils.data import DataLoader, TensorDataset

from plugin.engine import distributed
from plugin.errors import ConfigError
from plugin.losses import global_info_nce, nt_xent
from plugin.losses.global_batch import gather_rows

from .ddp import WORLD, needs_gloo, run_ranks

# ---- gather_rows: the contrastive losses' global batch ----

N_LOCAL, DIM, TAU = 3, 4, 0.1


def _features() -> tuple:
    """The global batch's queries and keys, the same in every process."""
    generator = torch.Generator().manual_seed(0)
    return tuple(torch.randn(WORLD * N_LOCAL, DIM, generator=generator) for _ in range(2))


def _info_nce(queries: torch.Tensor, keys: torch.Tensor, first: int) -> torch.Tensor:
    """CLIP-style loss of local ``queries`` against global ``keys``; query i matches key ``first + i``."""
    logits = F.normalize(queries, dim=1) @ F.normalize(keys, dim=1).T / TAU
    return F.cross_entropy(logits, torch.arange(first, first + len(queries)))


def _shared_loss(gathered: torch.Tensor) -> torch.Tensor:
    return (gathered.sin() * torch.arange(1.0, gathered.numel() + 1).view_as(gathered)).sum()


def _gather_with_grad(ctx: distributed.DistContext) -> dict:
    a, b = _features()
    mine = slice(ctx.rank * N_LOCAL, (ctx.rank + 1) * N_LOCAL)
    # a loss that every rank computes in full over the gathered tensor
    x = b[mine].clone().requires_grad_()
    gathered, first = gather_rows(x)
    _shared_loss(gathered).backward()
    # the contrastive case: local queries against the global batch's keys
    queries, keys = a[mine].clone().requires_grad_(), b[mine].clone().requires_grad_()
    _info_nce(queries, gather_rows(keys)[0], ctx.rank * N_LOCAL).backward()
    # the shipped losses: CLIP2Point's NT-Xent and Pic@Point's global InfoNCE over the global batch
    pair_a, pair_b = a[mine].clone().requires_grad_(), b[mine].clone().requires_grad_()
    loss = nt_xent(pair_a, pair_b, tau=TAU) + global_info_nce(F.normalize(pair_a, dim=1), F.normalize(pair_b, dim=1),
                                                              TAU)
    loss.backward()
    return {"gathered": gathered.detach(), "first": first, "shared_grad": x.grad, "query_grad": queries.grad,
            "key_grad": keys.grad, "loss": distributed.reduce_mean(loss.item()), "pair_grads": (pair_a.grad,
                                                                                                  pair_b.grad)}


@needs_gloo
def test_gather_rows_concatenates_in_rank_order_and_the_losses_span_the_global_batch(tmp_path):
    results = run_ranks(tmp_path, _gather_with_grad)
    a, b = _features()
    b_shared = b.clone().requires_grad_()
    _shared_loss(b_shared).backward()
    # single process, full batch: the sum over ranks of each rank's contrastive loss
    a_full, b_full = a.clone().requires_grad_(), b.clone().requires_grad_()
    sum(_info_nce(a_full[r * N_LOCAL:(r + 1) * N_LOCAL], b_full, r * N_LOCAL) for r in range(WORLD)).backward()
    # single process, full batch, the shipped losses: their mean over ranks is the global-batch loss
    pair_a, pair_b = a.clone().requires_grad_(), b.clone().requires_grad_()
    loss = nt_xent(pair_a, pair_b, tau=TAU) + global_info_nce(F.normalize(pair_a, dim=1), F.normalize(pair_b, dim=1),
                                                              TAU)
    loss.backward()
    for rank, result in enumerate(results):
        mine = slice(rank * N_LOCAL, (rank + 1) * N_LOCAL)
        assert torch.equal(result["gathered"], b) and result["first"] == rank * N_LOCAL  # a copy: exact
        assert result["loss"] == pytest.approx(loss.item(), rel=1e-5)
        # each rank's inputs get WORLD times the global loss's gradient, which DDP's average divides back
        assert_close(result["pair_grads"][0], WORLD * pair_a.grad[mine], rtol=1e-5, atol=1e-6)
        assert_close(result["pair_grads"][1], WORLD * pair_b.grad[mine], rtol=1e-5, atol=1e-6)
        # every rank backpropagates the same loss: the slice gets WORLD times its single-process gradient
        assert_close(result["shared_grad"], WORLD * b_shared.grad[mine], rtol=1e-5, atol=1e-6)
        assert_close(result["query_grad"], a_full.grad[mine], rtol=1e-5, atol=1e-6)
        assert_close(result["key_grad"], b_full.grad[mine], rtol=1e-5, atol=1e-6)


# ---- gather_predictions ----

N_EVAL = 7  # odd: the sampler pads rank 1 with sample 0


def _eval_dataset() -> TensorDataset:
    return TensorDataset(torch.arange(N_EVAL), torch.arange(N_EVAL * 3, dtype=torch.float32).view(N_EVAL, 3))


def _gather_predictions(ctx: distributed.DistContext) -> dict:
    loader = distributed.distributed_loader(DataLoader(_eval_dataset(), batch_size=2), ctx, shuffle=False, seed=0)
    ids, outputs = (torch.cat(parts) for parts in zip(*((i, 2 * x) for i, x in loader)))
    uneven = torch.arange(ctx.rank, N_EVAL, WORLD)  # a share without padding: 4 and 3 samples
    try:
        distributed.gather_predictions(ids, N_EVAL - WORLD)
        wrong_total = ""
    except ValueError as error:
        wrong_total = str(error)
    return {"local": ids, "ids": distributed.gather_predictions(ids, N_EVAL),
            "outputs": distributed.gather_predictions(outputs, N_EVAL),
            "uneven": distributed.gather_predictions(uneven, N_EVAL), "wrong_total": wrong_total}


@needs_gloo
def test_gather_predictions_returns_dataset_order_without_the_samplers_padding(tmp_path):
    results = run_ranks(tmp_path, _gather_predictions)
    assert [r["local"].tolist() for r in results] == [[0, 2, 4, 6], [1, 3, 5, 0]]  # the padding to remove
    _, features = _eval_dataset().tensors
    for result in results:
        assert result["ids"].tolist() == list(range(N_EVAL))
        assert torch.equal(result["outputs"], 2 * features)
        assert result["uneven"].tolist() == list(range(N_EVAL))
        assert "total=5" in result["wrong_total"]


# ---- distributed_loader, set_epoch ----

N_TRAIN = 10


def _collate(samples: list) -> dict:
    return {"id": torch.stack([sample[0] for sample in samples])}


def _worker_init(worker_id: int) -> None:
    torch.manual_seed(worker_id)


def _shuffled_shares(ctx: distributed.DistContext) -> dict:
    loader = DataLoader(TensorDataset(torch.arange(N_TRAIN)), batch_size=2, shuffle=True, collate_fn=_collate,
                        drop_last=False, worker_init_fn=_worker_init)
    mine = distributed.distributed_loader(loader, ctx, shuffle=True, seed=3)
    orders = {}
    for name, epoch in (("epoch0", 0), ("epoch1", 1), ("epoch0_again", 0)):
        distributed.set_epoch(mine, epoch)
        orders[name] = torch.cat([batch["id"] for batch in mine]).tolist()
    kept = (mine.batch_size, mine.collate_fn is _collate, mine.worker_init_fn is _worker_init, mine.drop_last,
            mine.dataset is loader.dataset)
    return {"orders": orders, "kept": kept}


@needs_gloo
def test_distributed_loader_splits_each_epochs_shuffle_between_the_ranks(tmp_path):
    results = run_ranks(tmp_path, _shuffled_shares)
    for result in results:
        assert result["kept"] == (2, True, True, False, True)
    for epoch in ("epoch0", "epoch1"):
        shares = [set(result["orders"][epoch]) for result in results]
        assert not shares[0] & shares[1]
        assert shares[0] | shares[1] == set(range(N_TRAIN))
    for result in results:
        assert result["orders"]["epoch0"] == result["orders"]["epoch0_again"]
    assert [r["orders"]["epoch0"] for r in results] != [r["orders"]["epoch1"] for r in results]


# ---- wrap_model: DDP training against one process at the global batch ----

BATCH, STEPS, LR = 2, 3, 0.5  # per-process batch; the single-process run takes WORLD * BATCH


def _mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def _train_dataset() -> TensorDataset:
    generator = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(WORLD * BATCH * STEPS, 4, generator=generator),
                         torch.randint(0, 3, (WORLD * BATCH * STEPS,), generator=generator))


def _train(model: torch.nn.Module, loader: DataLoader, log_loss: Callable[[float], float]) -> dict:
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    losses, weights = [], []
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(log_loss(loss.item()))
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    return {"losses": torch.tensor(losses, dtype=torch.float64), "weights": torch.stack(weights)}


def _ddp_training(ctx: distributed.DistContext) -> dict:
    device = distributed.process_device(ctx, torch.device("cpu"))
    try:
        distributed.wrap_model(_mlp(0), ctx, device, sync_batchnorm=True)
        sync_bn_error = ""
    except ConfigError as error:
        sync_bn_error = str(error)
    module = _mlp(seed=ctx.rank)  # different on each rank: DDP starts every rank from rank 0's weights
    model = distributed.wrap_model(module, ctx, device)
    loader = distributed.distributed_loader(DataLoader(_train_dataset(), batch_size=BATCH), ctx, shuffle=False,
                                            seed=0)
    result = _train(model, loader, distributed.reduce_mean)
    run_dir = distributed.broadcast_object(f"run-of-rank-{ctx.rank}")
    distributed.barrier()
    result.update(ctx=astuple(ctx), current=astuple(distributed.current()), flags=(ctx.enabled, ctx.is_main),
                  wrapped=isinstance(model, DistributedDataParallel), unwrapped=distributed.unwrap(model) is module,
                  run_dir=run_dir, sync_bn_error=sync_bn_error)
    return result


@needs_gloo
def test_ddp_training_matches_one_process_at_the_global_batch(tmp_path):
    results = run_ranks(tmp_path, _ddp_training)
    single = _train(_mlp(0), DataLoader(_train_dataset(), batch_size=WORLD * BATCH), float)
    for rank, result in enumerate(results):
        assert result["ctx"] == result["current"] == (rank, WORLD, rank)  # rank, world_size, local_rank
        assert result["flags"] == (True, rank == 0)  # enabled, is_main
        assert result["wrapped"] and result["unwrapped"]
        assert result["run_dir"] == "run-of-rank-0"
        assert "sync_batchnorm" in result["sync_bn_error"]
        assert_close(result["losses"], single["losses"], rtol=1e-5, atol=1e-6)
        assert_close(result["weights"], single["weights"], rtol=1e-5, atol=1e-6)
    # DDP's all-reduced gradients and identical optimizers keep the replicas bitwise equal
    assert torch.equal(results[0]["weights"], results[1]["weights"])


# ---- a single process ----

def test_single_process_helpers_are_the_identity(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = distributed.init_distributed("cpu")
    assert ctx == distributed.current() == distributed.DistContext(0, 1, 0)
    assert ctx.is_main and not ctx.enabled
    assert distributed.process_device(ctx, torch.device("cuda")) == torch.device("cuda")
    ddp_rank1 = distributed.DistContext(rank=1, world_size=2, local_rank=1)
    assert distributed.process_device(ddp_rank1, torch.device("cuda")) == torch.device("cuda", 1)
    assert distributed.process_device(ddp_rank1, torch.device("cpu")) == torch.device("cpu")
    model = _mlp(0)
    assert distributed.wrap_model(model, ctx, torch.device("cpu"), sync_batchnorm=True) is model
    assert distributed.unwrap(model) is model
    loader = DataLoader(_train_dataset(), batch_size=2, shuffle=True)
    assert distributed.distributed_loader(loader, ctx, shuffle=True, seed=0) is loader
    distributed.set_epoch(loader, 3)
    x = torch.randn(5, 2, requires_grad=True)
    gathered, first = gather_rows(x)
    assert gathered is x and first == 0
    assert distributed.gather_predictions(x, 5) is x
    obj = {"run_dir": "log/x"}
    assert distributed.broadcast_object(obj) is obj
    assert distributed.reduce_mean(2.5) == 2.5
    distributed.barrier()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.init_distributed("cpu") == distributed.DistContext()
    with pytest.raises(ValueError, match="device_kind"):
        distributed.init_distributed("tpu")
