"""Small fixes of OpenPoints 0.1.2 defects that are not about the point ops."""
import collections.abc
import functools
import warnings

import torch


def fix_rotation_iterable_check() -> None:
    """Upstream defect: ``PointCloudRotation`` tests ``collections.Iterable``, removed in Python 3.10.

    The module only uses ``collections.Iterable``, so pointing its ``collections`` name at
    ``collections.abc`` (which has ``Iterable``) fixes the check without touching anything else.
    """
    from openpoints.transforms import point_transformer_gpu

    point_transformer_gpu.collections = collections.abc


def single_process_dataloaders() -> None:
    """Upstream defect: ``build_dataloader_from_cfg`` defaults to ``distributed=True`` and always pins memory.

    A single-process run then fails inside ``DistributedSampler`` (no process group), and pinning
    warns on machines without an accelerator. The wrapper makes the default follow whether a
    process group is initialised and pins only when CUDA is available.
    """
    from openpoints import dataset
    from openpoints.dataset import build

    upstream = build.build_dataloader_from_cfg
    if getattr(upstream, "__wrapped__", None) is not None:
        return

    @functools.wraps(upstream)
    def build_dataloader_from_cfg(*args, distributed=None, **kwargs):
        if distributed is None:
            distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        loader = upstream(*args, distributed=distributed, **kwargs)
        loader.pin_memory = torch.cuda.is_available()
        return loader

    build.build_dataloader_from_cfg = build_dataloader_from_cfg
    dataset.build_dataloader_from_cfg = build_dataloader_from_cfg


def silence_deprecated_amp_decorators() -> None:
    """Upstream defect: several OpenPoints modules decorate with ``torch.cuda.amp.custom_fwd``.

    Recent torch deprecates that spelling and warns at import, once per decorated function; the
    decorators still work, so the warnings are noise for our users.
    """
    warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.custom_(fwd|bwd).*",
                            category=FutureWarning)
