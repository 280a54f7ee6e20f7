"""Multi-process training with PyTorch DDP, launched by ``torchrun``: the one module that knows about it.

``torchrun --nproc_per_node=N tools/main.py ...`` starts N processes and gives each ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. :func:`init_distributed` joins them into the default
process group (NCCL on CUDA, Gloo on CPU); without ``WORLD_SIZE > 1`` every helper here is the identity or
a no-op, so the engine has one code path for one and for several processes.

Conventions:

- **Batch size is per process**: a loader from :func:`distributed_loader` keeps ``loader``'s batch size, so
  the global batch is ``world_size`` times it.
- **Gradients are those of the mean over ranks of each rank's loss.** DDP (:func:`wrap_model`) averages
  parameter gradients over ranks. :func:`plugin.losses.global_batch.gather_rows` (the contrastive losses'
  negatives over the global batch) sends back to each rank the *sum* of all ranks' gradients with respect
  to its slice; with DDP's average the step is that of ``mean_over_ranks(loss_of_rank)``. When every rank's
  loss is a mean over its own samples (equal numbers), that is the single-process step at the global batch.
- **Only rank 0 writes** (``DistContext.is_main``); a value decided there (a run folder's path) reaches the
  others through :func:`broadcast_object`.
- **Seeds**: the ``seed`` of :func:`distributed_loader` must be equal on all ranks (one shuffle, split
  between them). Loader workers draw their seeds from the process's torch RNG, so seeding that per rank
  (``seed + rank``) gives the ranks different augmentations; model weights need no equal seed, as DDP starts
  every rank from rank 0's.
"""
import os
from dataclasses import dataclass
from typing import List, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from ..errors import ConfigError

T = TypeVar("T")
BACKENDS = {"cuda": "nccl", "cpu": "gloo"}


@dataclass(frozen=True)
class DistContext:
    """Where this process stands among the processes of a run.

    Args:
        rank: the process's index among all processes (0 writes the run folder).
        world_size: the number of processes.
        local_rank: the process's index on its machine (its CUDA device).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and logs (rank 0)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether several processes train together."""
        return self.world_size > 1


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _local_rank(rank: int) -> int:
    return int(os.environ.get("LOCAL_RANK", rank))  # torchrun sets it; one machine otherwise


def current() -> DistContext:
    """The context of the running process; single-process when no process group is initialized."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    rank = dist.get_rank()
    return DistContext(rank, dist.get_world_size(), _local_rank(rank))


def init_distributed(device_kind: str) -> DistContext:
    """Join the processes started by ``torchrun`` (when ``WORLD_SIZE > 1``) and return this process's context.

    Initializes the default process group from the environment (``env://``) unless one exists; for CUDA it
    first makes ``cuda:LOCAL_RANK`` the current device.

    Args:
        device_kind: ``"cuda"`` (NCCL backend) or ``"cpu"`` (Gloo backend), e.g. ``select_device(cfg).type``.
    """
    if device_kind not in BACKENDS:
        raise ValueError(f"device_kind must be one of {sorted(BACKENDS)}, got {device_kind!r}")
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size > 1 and not (dist.is_available() and dist.is_initialized()):
        if not dist.is_available():
            raise RuntimeError(f"WORLD_SIZE={world_size} but this PyTorch build has no torch.distributed.")
        local_rank = _local_rank(int(os.environ.get("RANK", 0)))
        if device_kind == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise ConfigError(f"LOCAL_RANK={local_rank} but {torch.cuda.device_count()} CUDA devices are "
                                  f"visible: start torchrun with --nproc_per_node at most that number.")
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=BACKENDS[device_kind])
    return current()


def close_distributed() -> None:
    """Destroy the default process group, if any (at the end of a run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def process_device(ctx: DistContext, device: torch.device) -> torch.device:
    """The device this process computes on: ``cuda:LOCAL_RANK`` under DDP on CUDA, else ``device``.

    Args:
        ctx: the process's context.
        device: the configured device (e.g. from ``select_device``).
    """
    if ctx.enabled and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def wrap_model(model: torch.nn.Module, ctx: DistContext, device: torch.device, sync_batchnorm: bool = False,
               find_unused_parameters: bool = False) -> torch.nn.Module:
    """``model`` on ``device`` in ``DistributedDataParallel`` (parameters broadcast from rank 0); ``model`` as is
    for a single process.

    Call ``forward`` on the returned module (DDP reduces gradients through it) and the model's own methods
    (export, parameter groups) on :func:`unwrap` of it. Parameters keep their identity, so an optimizer may be
    built before or after wrapping.

    Args:
        model: the model to train.
        ctx: the process's context.
        device: the process's device (:func:`process_device`).
        sync_batchnorm: convert BatchNorm layers to ``SyncBatchNorm`` (statistics over the global batch;
            CUDA only).
        find_unused_parameters: let some trainable parameters take no part in a step's loss (slower).
    """
    if not ctx.enabled:
        return model
    if sync_batchnorm:
        if device.type != "cuda":
            raise ConfigError("SyncBatchNorm runs only on CUDA: turn sync_batchnorm off for DDP on CPU.")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=find_unused_parameters)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module under ``DistributedDataParallel``; ``model`` itself otherwise.

    Args:
        model: a model, wrapped by :func:`wrap_model` or not.
    """
    return model.module if isinstance(model, DistributedDataParallel) else model


def distributed_loader(loader: DataLoader, ctx: DistContext, shuffle: bool, seed: int) -> DataLoader:
    """A loader like ``loader`` that reads this rank's share of its dataset; ``loader`` for a single process.

    The share comes from a ``DistributedSampler``: it pads the dataset by repeating its first samples to a
    multiple of ``world_size`` and gives rank ``r`` the samples ``r::world_size`` of the (shuffled) order.
    Batch size (per process), workers and their seeding, collate function, pinning and ``drop_last`` are
    ``loader``'s. Call :func:`set_epoch` before each epoch to reshuffle.

    Args:
        loader: the single-process loader.
        ctx: the process's context.
        shuffle: shuffle the dataset every epoch (train); False keeps dataset order for
            :func:`gather_predictions` (evaluation).
        seed: the shuffle's seed, equal on all ranks.
    """
    if not ctx.enabled:
        return loader
    sampler = DistributedSampler(loader.dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle,
                                 seed=seed)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                      worker_init_fn=loader.worker_init_fn)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Seed the shuffle of ``loader``'s ``DistributedSampler`` for ``epoch``; no-op for other loaders.

    Args:
        loader: a loader, from :func:`distributed_loader` or not.
        epoch: the epoch about to start.
    """
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)


def gather_predictions(tensor: torch.Tensor, total: int) -> torch.Tensor:
    """Every rank's per-sample outputs of an evaluation in dataset order, the sampler's padding removed;
    ``tensor`` itself for a single process.

    The outputs must come from a loader of :func:`distributed_loader` with ``shuffle=False`` that drops
    nothing: rank ``r``'s ``k``-th sample is then sample ``k * world_size + r`` of the padded dataset order.

    Args:
        tensor: this rank's outputs, in its loader's order (lengths may differ by one between ranks; the other
            dimensions may not).
        total: the dataset's number of samples.
    """
    if not _active():
        return tensor
    world_size = dist.get_world_size()
    lengths = _all_gather_tensor(torch.tensor([tensor.shape[0]], device=tensor.device)).tolist()
    padding = sum(lengths) - total
    if not 0 <= padding < world_size:
        raise ValueError(f"The ranks hold {sum(lengths)} outputs in all, which a DistributedSampler without "
                         f"drop_last does not give for total={total} samples.")
    longest = max(lengths)
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[:tensor.shape[0]] = tensor
    parts = _all_gather_tensor(padded).view(world_size, longest, *tensor.shape[1:])
    kept = torch.arange(longest, device=tensor.device)[:, None] < torch.tensor(lengths, device=tensor.device)
    return parts.transpose(0, 1)[kept][:total]  # row k * world_size + r is rank r's k-th output


def _all_gather_tensor(tensor: torch.Tensor) -> torch.Tensor:
    parts: List[torch.Tensor] = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def reduce_mean(value: float) -> float:
    """The mean of ``value`` over ranks (e.g. a loss for the log); ``value`` for a single process.

    Args:
        value: this rank's number.
    """
    if not _active():
        return float(value)
    total = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(total)
    return total.item() / dist.get_world_size()


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (e.g. the run folder rank 0 created); ``obj`` for a single process.

    Args:
        obj: a picklable object; only rank 0's value is used.
    """
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_collective_device())
    return box[0]


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics drift apart between the ranks, since
    each normalises its own batches); no-op for a single process. Call it before an evaluation whose
    predictions are gathered, so that all ranks score with the same model.

    Args:
        model: the model, wrapped or not.
    """
    if not _active():
        return
    for buffer in unwrap(model).buffers():
        dist.broadcast(buffer.data, src=0)


def barrier() -> None:
    """Wait until every rank reaches this point; no-op for a single process."""
    if not _active():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()
