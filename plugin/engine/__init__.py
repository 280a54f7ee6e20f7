"""Runners (one per mode), config loading, run folders and atomic checkpoints."""
# importing the runner modules registers their modes
from . import adapter, classification, extract, finetune, pretrain, stages, svm, zeroshot  # noqa: F401
from .config import load_config
from .registry import RUNNERS, runner_for

__all__ = ["RUNNERS", "runner_for", "load_config"]
