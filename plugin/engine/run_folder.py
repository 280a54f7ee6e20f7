"""Run folders: ``<root_dir>/<task>/<exp>-<time>/`` with cfg, log, metrics and checkpoints.

Contents::

    cfg.yaml         the merged config of the run
    log.txt          everything logged during the run
    metrics.json     final figures, machine-readable
    ckpt_latest.pth  state after the last finished epoch (model, optimizer, scheduler, epoch, RNG)
    ckpt_best.pth    the same, at the best validation score

All files are written atomically (:mod:`plugin.engine.atomic_io`).
"""
import atexit
import contextlib
import glob
import json
import logging
import os
import re
import socket
import sys
import time
from typing import Any, Dict, Optional, Tuple

import yaml

from ..errors import BadCheckpointError, UserError
from ..io import read_checkpoint
from . import atomic_io

LOGGER = logging.getLogger("plugin")


RUN_NAME = r"{exp}-\d{{8}}-\d{{6}}(-\d+)?"  # <exp>-YYYYmmdd-HHMMSS, suffixed -N when two start in one second
LOCK_FILE = "run.lock"
CHECKPOINTS = ("ckpt_latest.pth", "ckpt_best.pth")


class RunLockedError(UserError):
    """Another live process is writing the run folder."""


class RunFolder:
    """One run's folder, the lock that keeps it to one writer, and the logging into its ``log.txt``.

    Opening a folder takes its lock (``run.lock``, the writer's pid and host): a second process that
    opens the folder while the writer lives is refused with :class:`RunLockedError`; a lock left by a
    dead process is taken over. :meth:`release` (called when the run finishes, and at exit) frees it.

    Args:
        path: the folder (created if missing).
    """

    def __init__(self, path: str):
        self.path = path
        os.makedirs(path, exist_ok=True)
        self._take_lock()
        self.attach_log()

    @classmethod
    def create(cls, root_dir: str, task: str, exp: str) -> "RunFolder":
        """A new folder ``root_dir/task/exp-YYYYmmdd-HHMMSS`` (suffixed ``-N`` if that exists).

        The folder is made with an exclusive ``mkdir``, so concurrent runs never share one.
        """
        parent = os.path.join(root_dir, task)
        os.makedirs(parent, exist_ok=True)
        base = os.path.join(parent, f"{exp}-{time.strftime('%Y%m%d-%H%M%S')}")
        path, n = base, 1
        while True:
            try:
                os.mkdir(path)
                return cls(path)
            except FileExistsError:
                path, n = f"{base}-{n}", n + 1

    @staticmethod
    def latest(root_dir: str, task: str, exp: str) -> Optional[str]:
        """The newest run folder of exactly ``task``/``exp`` (not ``<exp>-<other>``) holding a checkpoint."""
        pattern = re.compile(RUN_NAME.format(exp=re.escape(exp)))
        runs = [p for p in glob.glob(os.path.join(glob.escape(os.path.join(root_dir, task)), "*"))
                if pattern.fullmatch(os.path.basename(p))
                and any(os.path.isfile(os.path.join(p, name)) for name in CHECKPOINTS)]
        return max(runs, key=os.path.getmtime) if runs else None

    def newest_checkpoint(self) -> Tuple[Optional[str], Optional[Dict[str, Any]]]:
        """``(path, state)`` of the readable checkpoint with the highest epoch, or ``(None, None)``.

        A run killed while writing its first ``ckpt_latest.pth`` still resumes from ``ckpt_best.pth``.
        """
        found = []
        for name in CHECKPOINTS:
            path = self.file(name)
            if os.path.isfile(path):
                try:
                    found.append((path, load_checkpoint(path, "run_dir")))
                except BadCheckpointError as err:
                    LOGGER.warning(f"skipping {name}: {err}")
        found = [(path, state) for path, state in found if isinstance(state.get("epoch"), int)]
        return max(found, key=lambda item: item[1]["epoch"]) if found else (None, None)

    def sweep_partial_writes(self) -> None:
        """Remove the temporary files of writes a killed process left behind (only the lock holder calls it)."""
        for tmp in glob.glob(os.path.join(glob.escape(self.path), ".*.tmp")):
            os.remove(tmp)
            LOGGER.info(f"removed {os.path.basename(tmp)}, the leftover of an interrupted write")

    def _take_lock(self) -> None:
        lock = self.file(LOCK_FILE)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        while True:
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_lock(lock)
                if holder == me:
                    break  # this process holds it already (e.g. a run resumed in the same process)
                if holder and _alive(holder):
                    raise RunLockedError(f"Run folder {self.path} is being written by process {holder['pid']} on "
                                         f"{holder['host']}: wait for that run to end (or stop it) before resuming "
                                         f"it, or start a new run.") from None
                with contextlib.suppress(FileNotFoundError):
                    os.remove(lock)  # left by a process that died: take it over
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            break
        atexit.register(self.release)

    def release(self) -> None:
        """Free the folder's lock if this process holds it."""
        lock = self.file(LOCK_FILE)
        if _read_lock(lock) == {"pid": os.getpid(), "host": socket.gethostname()}:
            with contextlib.suppress(FileNotFoundError):
                os.remove(lock)

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


def _read_lock(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path) as f:
            holder = json.load(f)
    except (OSError, ValueError):  # gone, or half written by a process that died
        return None
    return holder if isinstance(holder, dict) and {"pid", "host"} <= holder.keys() else None


def _alive(holder: Dict[str, Any]) -> bool:
    """Whether the lock holder still runs (a holder on another host is taken to be alive)."""
    if holder["host"] != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True
