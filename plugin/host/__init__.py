"""Everything that adapts OpenPoints 0.1.2 to run on CPU and CUDA with our native ops.

``install()`` (called by ``import plugin``) applies, once per process and in this order:

1. registers :mod:`plugin.host.openpoints_kernel_api` as ``pointnet2_batch_cuda`` in ``sys.modules``
   before OpenPoints is imported, so ``openpoints.cpp.pointnet2_cuda`` is a working module;
2. rebinds the seven point-op autograd classes (:mod:`plugin.host.autograd_rebinding`);
3. fixes ``PointCloudRotation`` on Python >= 3.10 and makes single-process dataloaders the default
   (:mod:`plugin.host.upstream_fixes`).

Each patch names the upstream defect it works around in its docstring. The dataset classes that replace
upstream ones (they download at run time or need CUDA) are registered with the others by
:mod:`plugin.datasets` (``ModelNet40Ply2048``, ``ScanObjectNNHardest``). This package is the bottom layer:
it imports nothing else of the plugin.
"""
import sys
from typing import List

_PATCHED: List[str] = []


def install() -> List[str]:
    """Apply every OpenPoints patch (idempotent); returns the names of the rebound classes."""
    if _PATCHED:
        return _PATCHED
    from . import openpoints_kernel_api, upstream_fixes

    upstream_fixes.silence_deprecated_amp_decorators()
    # Must precede any openpoints import: openpoints.cpp binds this name once, at import.
    sys.modules.setdefault("pointnet2_batch_cuda", openpoints_kernel_api)

    from . import autograd_rebinding

    _bind_kernel_module(openpoints_kernel_api)
    _PATCHED.extend(autograd_rebinding.rebind_autograd_classes())
    upstream_fixes.fix_rotation_iterable_check()
    upstream_fixes.single_process_dataloaders()
    return _PATCHED


def _bind_kernel_module(module) -> None:
    """Also bind the kernel API where OpenPoints was imported before ``install()`` ran.

    In that case OpenPoints already holds its placeholder for the missing extension under the name
    ``pointnet2_cuda`` in these modules.
    """
    import importlib

    for name in ("openpoints.cpp.pointnet2_batch", "openpoints.cpp", "openpoints.models.layers.group",
                 "openpoints.models.layers.subsample", "openpoints.models.layers.upsampling"):
        importlib.import_module(name).pointnet2_cuda = module
