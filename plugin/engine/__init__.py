"""The top layer: runners (one per mode, registered in ``RUNNERS``) and what they share.

Shared modules (no mode imports a mode for its helpers): :mod:`.runner` (the base classes), :mod:`.config`
(loading and validation), :mod:`.data` (dataloaders, loaders over subsets, probe loaders, progress bars),
:mod:`.builders` (models, optimizers, schedulers, device, seeds), :mod:`.batch`, :mod:`.run_folder`,
:mod:`.encoder_weights` and :mod:`.registry`.
"""
# importing the runner modules registers their modes
from . import modes  # noqa: F401
from .config import load_config
from .registry import RUNNERS, runner_for

__all__ = ["RUNNERS", "runner_for", "load_config"]
