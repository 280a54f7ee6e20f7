"""Run folders: ``<root_dir>/<task>/<exp>-<time>/`` with cfg, log, metrics and checkpoints.

Contents::

    cfg.yaml         the merged config of the run
    log.txt          everything logged during the run
    metrics.json     final figures, machine-readable
    ckpt_latest.pth  state after the last finished epoch (model, optimizer, scheduler, epoch, RNG)
    ckpt_best.pth    the same, at the best validation score

All files are written atomically (:mod:`plugin.engine.atomic_io`).
"""
import glob
import logging
import os
import sys
import time
from typing import Any, Dict, Optional

import yaml

from ..io import read_checkpoint
from . import atomic_io

LOGGER = logging.getLogger("plugin")


class RunFolder:
    """One run's folder and the logging into its ``log.txt``.

    Args:
        path: the folder (created if missing).
    """

    def __init__(self, path: str):
        self.path = path
        os.makedirs(path, exist_ok=True)
        self.attach_log()

    @classmethod
    def create(cls, root_dir: str, task: str, exp: str) -> "RunFolder":
        """A new folder ``root_dir/task/exp-YYYYmmdd-HHMMSS`` (suffixed if that exists)."""
        base = os.path.join(root_dir, task, f"{exp}-{time.strftime('%Y%m%d-%H%M%S')}")
        path, n = base, 1
        while os.path.exists(path):
            path, n = f"{base}-{n}", n + 1
        return cls(path)

    @staticmethod
    def latest(root_dir: str, task: str, exp: str) -> Optional[str]:
        """The newest run folder of ``task``/``exp`` that holds a ``ckpt_latest.pth``, if any."""
        runs = [p for p in glob.glob(os.path.join(root_dir, task, f"{exp}-*"))
                if os.path.isfile(os.path.join(p, "ckpt_latest.pth"))]
        return max(runs, key=os.path.getmtime) if runs else None

    def file(self, name: str) -> str:
        """Path of ``name`` inside the folder."""
        return os.path.join(self.path, name)

    def attach_log(self) -> None:
        """Send the "plugin" logger to this folder's log.txt and to stdout (replacing earlier handlers)."""
        LOGGER.setLevel(logging.INFO)
        for handler in list(LOGGER.handlers):
            LOGGER.removeHandler(handler)
            handler.close()
        fmt = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
        file_handler = logging.FileHandler(self.file("log.txt"))
        file_handler.setFormatter(fmt)
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(fmt)
        LOGGER.addHandler(file_handler)
        LOGGER.addHandler(console)
        LOGGER.propagate = False

    def save_cfg(self, cfg: Dict[str, Any]) -> None:
        """Write the merged config as ``cfg.yaml``."""
        plain = cfg.dict() if hasattr(cfg, "dict") else dict(cfg)
        atomic_io.save_text(yaml.safe_dump(plain, sort_keys=False), self.file("cfg.yaml"))

    def save_metrics(self, metrics: Dict[str, Any]) -> None:
        """Write the final figures as ``metrics.json``."""
        atomic_io.save_json(metrics, self.file("metrics.json"))

    def save_checkpoint(self, state: Dict[str, Any], name: str = "ckpt_latest.pth") -> str:
        """Atomically write a checkpoint ``state`` under ``name``; returns its path."""
        path = self.file(name)
        atomic_io.save_torch(state, path)
        return path


def load_checkpoint(path: str, key: str = "load_path") -> Dict[str, Any]:
    """Load a checkpoint on CPU without running code from it; a bad or missing file names ``key`` to set."""
    return read_checkpoint(path, key, "a ckpt_latest.pth or ckpt_best.pth of a finished run "
                                      "(they live in log/<task>/<exp>-<time>/)")
