"""Negatives over the global batch: every process's rows of a contrastive loss, with gradients.

Under DDP (``torchrun``) each process holds a share of the batch; CLIP and ULIP contrast each sample
against the samples of *all* processes. :func:`gather_rows` concatenates the rows of every rank in rank
order through ``torch.distributed.nn.functional.all_gather``, whose backward returns to each rank the sum
of all ranks' gradients for its rows. Each rank's loss is a mean over its own rows; DDP's gradient
average then gives exactly the single-process step at the global batch. Without a process group (or
with one process) it is the identity, so single-process losses keep their arithmetic.
"""
from typing import Tuple

import torch
import torch.distributed as dist


def gather_rows(tensor: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """The rows of every rank, in rank order, and the index of this rank's first row among them.

    Args:
        tensor: (n, ...) this rank's rows; the same shape on every rank.
    """
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return tensor, 0
    from torch.distributed.nn.functional import all_gather  # gradient-aware (backward: reduce-scatter, sum)
    return torch.cat(all_gather(tensor), dim=0), dist.get_rank() * tensor.shape[0]
