"""OpenPoints plugin for 2D-to-3D cross-modal learning.

``import plugin`` makes OpenPoints' own backbones run on CPU and CUDA with our native point ops
(:mod:`plugin.host`) and registers this project's datasets and runner modes into the registries.
"""
from .host import install as _install_host

_install_host()

from . import clip, datasets, engine, models  # noqa: E402,F401  (registration happens on import)

__version__ = "0.1.0"
