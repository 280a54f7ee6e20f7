"""Runners (one per mode), config loading, run folders and atomic checkpoints."""
from . import classification, extract, finetune, pretrain, stages, svm  # noqa: F401  (register the modes)
from .config import load_config
from .registry import RUNNERS, runner_for

__all__ = ["RUNNERS", "runner_for", "load_config"]
