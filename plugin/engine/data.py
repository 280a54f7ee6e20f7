"""The data side of a run: dataloaders from the config, loaders over a subset, probe loaders, progress bars.

Every mode reads its splits through :func:`build_dataloader`; a loader over some of a split's samples,
or in another order, is :func:`loader_over` of it; the frozen-encoder modes (``svm``, ``extract``, the
adapters) read splits unaugmented through :func:`probe_loader`.
"""
import copy
import inspect
import random
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from openpoints.dataset import build_dataloader_from_cfg
from openpoints.dataset.build import DATASETS
from openpoints.transforms.transforms_factory import DataTransforms
from openpoints.utils import EasyConfig
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from ..datasets.rendered_views import PointCloudUnitSphere
from ..errors import ConfigError, DataNotFoundError
from .builders import check_name
from .distributed import current


def seed_worker(worker_id: int) -> None:
    """Seed NumPy and ``random`` in a loader worker from torch's seed of that worker.

    The loader draws a new base seed from torch's RNG every epoch and adds the worker id, so workers
    and epochs draw different augmentations, and a seeded (or resumed) run draws the same ones again.
    OpenPoints' own ``worker_init_fn`` reseeds NumPy from the parent's state, which is the same every
    epoch: each epoch would repeat the previous epoch's augmentations.

    Args:
        worker_id: the worker's index (already part of torch's seed).
    """
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


def progress(iterable, desc: str, **kwargs: Any) -> tqdm:
    """A tqdm bar with elapsed time and ETA.

    Args:
        iterable: what the bar iterates over (a loader, a range of epochs).
        desc: the bar's label.
        **kwargs: further ``tqdm`` arguments (``unit``, ``initial``, ``total``).
    """
    kwargs.setdefault("disable", not current().is_main)  # one bar per run under DDP
    return tqdm(iterable, desc=desc, dynamic_ncols=True, leave=False, mininterval=1.0, **kwargs)


def loader_over(loader: DataLoader, indices: Optional[Sequence[int]] = None, shuffle: bool = False,
                drop_last: Optional[bool] = None) -> DataLoader:
    """A loader like ``loader`` (batch size, workers and their seeding, collate function, pinning) over its dataset.

    Args:
        loader: the loader whose dataset and settings are used.
        indices: the samples of the dataset to read (a ``Subset``); None: all of them.
        shuffle: reshuffle the samples every epoch.
        drop_last: drop an incomplete last batch; None keeps ``loader``'s choice.
    """
    dataset = loader.dataset if indices is None else Subset(loader.dataset, [int(i) for i in indices])
    return loader_like(loader, dataset, shuffle, loader.drop_last if drop_last is None else drop_last)


def loader_like(loader: DataLoader, dataset: Dataset, shuffle: bool, drop_last: bool) -> DataLoader:
    """A loader over ``dataset`` with ``loader``'s batch size, workers and their seeding, collate function and pinning.

    Args:
        loader: the loader whose settings are used.
        dataset: what the new loader reads.
        shuffle: reshuffle every epoch.
        drop_last: drop an incomplete last batch.
    """
    return DataLoader(dataset, batch_size=loader.batch_size, shuffle=shuffle, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, drop_last=drop_last, worker_init_fn=loader.worker_init_fn,
                      pin_memory=loader.pin_memory)


def base_dataset(dataset: Any) -> Any:
    """The dataset under any ``Subset`` wrappers.

    Args:
        dataset: a dataset, possibly a ``Subset`` of one.
    """
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


def build_dataloader(cfg: Dict[str, Any], split: str, batch_size: Optional[int] = None,
                     shuffle: Optional[bool] = None) -> DataLoader:
    """The single-process dataloader of ``split`` from ``cfg.dataset`` and ``cfg.datatransforms``.

    Args:
        cfg: the run config.
        split: train, val or test.
        batch_size: defaults to ``batch_size`` for train and ``val_batch_size`` otherwise.
        shuffle: override the default (shuffle only the train split), e.g. for feature extraction; a
            loader read in another order than its default keeps every batch (no ``drop_last``).
    """
    check_name(cfg.dataset.get("common"), DATASETS, "dataset.common")
    for name in (cfg.get("datatransforms") or {}).get(split) or []:
        if DataTransforms.get(name) is None:
            raise ConfigError(f"Unknown transform '{name}' in datatransforms.{split}: use names from "
                              f"{', '.join(sorted(DataTransforms.module_dict))}.")
    if batch_size is None:
        batch_size = cfg.batch_size if split == "train" else cfg.get("val_batch_size", cfg.batch_size)
    # a copy: OpenPoints' builder writes the built transform objects into the dataset config it is given
    loader = build_dataloader_from_cfg(batch_size, copy.deepcopy(cfg.dataset), cfg.dataloader,
                                       datatransforms_cfg=cfg.get("datatransforms"), split=split,
                                       distributed=False)
    loader.worker_init_fn = seed_worker
    if shuffle is not None and shuffle != (split == "train"):
        loader = loader_over(loader, shuffle=shuffle, drop_last=False)
    return loader


def check_training_steps(samples: int, batch_size: int, drop_last: bool, what: str = "train split") -> int:
    """Steps per epoch of a training set; an epoch of zero steps is refused before the first epoch.

    Args:
        samples: the training samples.
        batch_size: samples per step.
        drop_last: whether an incomplete last batch is dropped (OpenPoints' train loaders drop it).
        what: the training set, for the message (e.g. ``train split``).

    Raises:
        DataNotFoundError: the training set is empty.
        ConfigError: every batch would be dropped (fewer samples than ``batch_size``).
    """
    steps = samples // batch_size if drop_last else -(-samples // batch_size)
    if samples == 0:
        raise DataNotFoundError(f"The {what} holds no samples, so training would take no step: check "
                                f"dataset.common.data_dir and the split list.")
    if steps == 0:
        raise ConfigError(f"The {what} has {samples} samples, fewer than batch_size={batch_size} (incomplete batches "
                          f"are dropped), so training would take no step: set batch_size to at most {samples}.")
    return steps


def check_training_loader(loader: DataLoader, what: str = "train split") -> int:
    """:func:`check_training_steps` of ``loader`` (its dataset size, batch size and ``drop_last``).

    Args:
        loader: the training loader.
        what: the training set, for the message.
    """
    return check_training_steps(len(loader.dataset), loader.batch_size, loader.drop_last, what)


def probe_transforms(cfg: Dict[str, Any], split: str, normalize: bool = False) -> Optional[list]:
    """The transforms of ``split`` for feature extraction.

    Args:
        cfg: the run config.
        split: the split to read.
        normalize: end with :class:`~plugin.datasets.rendered_views.PointCloudUnitSphere`, the
            pre-training clouds' centring and scaling.

    Returns:
        The test split's transforms (no augmentation) if configured, else ``split``'s, plus the normalisation.
    """
    transforms = cfg.get("datatransforms") or {}
    chosen = transforms.get("test", transforms.get(split))
    if normalize:
        chosen = [*(chosen or []), PointCloudUnitSphere.__name__]
    return chosen


def probe_loader(cfg: Dict[str, Any], split: str, normalize: bool = False) -> DataLoader:
    """``split`` in dataset order with :func:`probe_transforms`, so training features are not augmented.

    A dataset that augments its train split itself (point order, point subsets, views; an ``augment``
    argument) reads it the test way, so the features do not depend on the seed.

    Args:
        cfg: the run config.
        split: the split to read.
        normalize: centre and scale each cloud into the unit sphere (see :func:`probe_transforms`).
    """
    plain = copy.deepcopy(cfg)
    if "augment" in inspect.signature(DATASETS.get(plain.dataset.common.NAME)).parameters:
        plain.dataset.common.augment = False
    transforms = probe_transforms(cfg, split, normalize)
    if transforms is not None:
        plain.datatransforms = plain.get("datatransforms") or EasyConfig()
        plain.datatransforms[split] = transforms
    return build_dataloader(plain, split, batch_size=cfg.val_batch_size, shuffle=False)


def class_names_of(dataset: Any, override: Optional[Sequence[str]] = None) -> List[str]:
    """The class names in label order: ``override`` (``zeroshot.class_names``) or the dataset's ``classes``.

    Args:
        dataset: the evaluated dataset.
        override: explicit names, for datasets without a ``classes`` attribute.
    """
    names = override if override else getattr(dataset, "classes", None)
    if not names:
        raise ConfigError(f"Dataset {type(dataset).__name__} has no class names: set zeroshot.class_names to the "
                          f"list of names in label order.")
    return [str(name) for name in names]
