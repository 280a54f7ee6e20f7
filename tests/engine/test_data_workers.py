"""Loader workers draw different augmentations per worker and per epoch, and the same ones again under one seed."""
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from plugin.engine.data import seed_worker


class _NumpyDraws(Dataset):
    """Each item is a NumPy random draw, as OpenPoints' transforms make them."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> float:
        return float(np.random.rand())


def _epochs(seed: int, epochs: int = 2):
    torch.manual_seed(seed)
    np.random.seed(0)  # the parent's NumPy state, which OpenPoints' worker_init_fn reseeds from
    loader = DataLoader(_NumpyDraws(), batch_size=2, num_workers=2, worker_init_fn=seed_worker)
    return [torch.cat(list(loader)).tolist() for _ in range(epochs)]


def test_workers_and_epochs_draw_differently_and_a_seed_repeats_them():
    first = _epochs(seed=0)
    assert len(set(first[0])) == 8                 # the two workers do not repeat each other's draws
    assert set(first[0]).isdisjoint(first[1])      # nor does the next epoch repeat this one
    assert _epochs(seed=0) == first                # the same seed gives the same draws
    assert _epochs(seed=1) != first
