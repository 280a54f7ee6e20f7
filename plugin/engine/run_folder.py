"""Run folders: ``<root_dir>/<task>/<exp>-<time>/`` with cfg, log, metrics and checkpoints.

Contents::

    cfg.yaml         the merged config of the run
    log.txt          everything logged during the run
    metrics.json     final figures, machine-readable
    ckpt_latest.pth  state after the last finished epoch (model, optimizer, scheduler, epoch, RNG)
    ckpt_best.pth    the same, at the best validation score

All files are written atomically (:mod:`plugin.io.atomic_files`); a folder or file the file system
refuses (read-only, a path through a regular file, a full disk) is one sentence naming the key to
change (:class:`~plugin.io.OutputNotWritableError`).

A folder made by :meth:`RunFolder.create` is *fresh* until it holds a checkpoint or ``metrics.json``;
inside :func:`discarding_fresh_folders` (``tools/main.py``) a user error removes the fresh folders of
the run, so a run that fails on its input leaves no partial folder behind.
"""
import atexit
import contextlib
import glob
import json
import logging
import os
import re
import shutil
import socket
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple, Type

import yaml

from ..errors import BadCheckpointError, UserError
from ..io import read_checkpoint, save_json, save_text, save_torch, writing
from .distributed import broadcast_object, current

LOGGER = logging.getLogger("plugin")


RUN_NAME = r"{exp}-\d{{8}}-\d{{6}}(-\d+)?"  # <exp>-YYYYmmdd-HHMMSS, suffixed -N when two start in one second
LOCK_FILE = "run.lock"
CHECKPOINTS = ("ckpt_latest.pth", "ckpt_best.pth")


class RunLockedError(UserError):
    """Another live process is writing the run folder."""


_WATCHED: List[List["RunFolder"]] = []  # per open discarding_fresh_folders block: the folders create() made in it


class RunFolder:
    """One run's folder, the lock that keeps it to one writer, and the logging into its ``log.txt``.

    Opening a folder takes its lock (``run.lock``, the writer's pid and host): a second process that
    opens the folder while the writer lives is refused with :class:`RunLockedError`; a lock left by a
    dead process is taken over. :meth:`release` (called when the run finishes, and at exit) frees it.

    Args:
        path: the folder (created if missing).
        config_key: the config key that chose the folder (``run_dir``; ``root_dir`` for a new run), named
            when the folder cannot be written.
    """

    def __init__(self, path: str, config_key: str = "run_dir"):
        self.path = path
        self.config_key = config_key
        self.fresh = False  # see the module docstring; only create() makes a fresh folder
        self._made_parents: List[str] = []
        self.writer = current().is_main  # under DDP only rank 0 writes; the others log warnings only
        if not self.writer:
            LOGGER.setLevel(logging.WARNING)
            return
        with writing(path, config_key):
            os.makedirs(path, exist_ok=True)
            self._take_lock()
            self.attach_log()

    @classmethod
    def create(cls, root_dir: str, task: str, exp: str) -> "RunFolder":
        """A new folder ``root_dir/task/exp-YYYYmmdd-HHMMSS`` (suffixed ``-N`` if that exists).

        The folder is made with an exclusive ``mkdir``, so concurrent runs never share one. It is fresh
        (see the module docstring) until its first checkpoint or metrics. Under DDP rank 0 makes it and
        the other ranks receive its path.
        """
        if not current().is_main:
            return cls(broadcast_object(None), "root_dir")
        parent = os.path.join(root_dir, task)
        made = _missing_folders(parent)
        base = os.path.join(parent, f"{exp}-{time.strftime('%Y%m%d-%H%M%S')}")
        path, n = base, 1
        with writing(parent, "root_dir"):
            os.makedirs(parent, exist_ok=True)
            while True:
                try:
                    os.mkdir(path)
                    break
                except FileExistsError:
                    path, n = f"{base}-{n}", n + 1
        folder = cls(broadcast_object(path), "root_dir")
        folder.fresh, folder._made_parents = True, made
        if _WATCHED:
            _WATCHED[-1].append(folder)
        return folder

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
        if not self.writer:
            return
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
        if not self.writer:
            return
        lock = self.file(LOCK_FILE)
        if _read_lock(lock) == {"pid": os.getpid(), "host": socket.gethostname()}:
            with contextlib.suppress(FileNotFoundError):
                os.remove(lock)

    def keep(self) -> None:
        """Mark the folder as holding results, so a later user error does not remove it."""
        self.fresh = False

    def discard(self) -> None:
        """Remove the folder, and the parents :meth:`create` made for it if they are empty."""
        if not self.writer:
            return
        self.release()
        inside = os.path.abspath(self.path) + os.sep
        for handler in list(LOGGER.handlers):
            if isinstance(handler, logging.FileHandler) and handler.baseFilename.startswith(inside):
                LOGGER.removeHandler(handler)
                handler.close()
        shutil.rmtree(self.path, ignore_errors=True)
        for parent in self._made_parents:
            with contextlib.suppress(OSError):  # another run's folder appeared in it
                os.rmdir(parent)

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
        console = _StdoutHandler()
        console.setFormatter(fmt)
        LOGGER.addHandler(file_handler)
        LOGGER.addHandler(console)
        LOGGER.propagate = False

    def save_cfg(self, cfg: Dict[str, Any]) -> None:
        """Write the merged config as ``cfg.yaml``."""
        if not self.writer:
            return
        plain = cfg.dict() if hasattr(cfg, "dict") else dict(cfg)
        save_text(yaml.safe_dump(plain, sort_keys=False), self.file("cfg.yaml"), self.config_key)

    def save_metrics(self, metrics: Dict[str, Any]) -> None:
        """Write the final figures as ``metrics.json`` (strict JSON: NaN and infinities become null)."""
        if not self.writer:
            return
        save_json(metrics, self.file("metrics.json"), self.config_key)
        self.keep()

    def save_checkpoint(self, state: Dict[str, Any], name: str = "ckpt_latest.pth") -> str:
        """Atomically write a checkpoint ``state`` under ``name`` (refused when it cannot fit); returns its path."""
        path = self.file(name)
        if self.writer:
            save_torch(state, path, self.config_key)
            self.keep()
        return path


@contextlib.contextmanager
def discarding_fresh_folders(errors: Tuple[Type[BaseException], ...]) -> Iterator[None]:
    """Remove the fresh folders :meth:`RunFolder.create` made in the block when one of ``errors`` ends it.

    A folder that holds a checkpoint or metrics is kept, and so is a resumed run's folder (it was not
    made by :meth:`RunFolder.create`). The error is raised again.

    Args:
        errors: the exception classes that mean the user's input ended the run (not a bug, not an interrupt).
    """
    created: List[RunFolder] = []
    _WATCHED.append(created)
    try:
        yield
    except errors:
        for folder in reversed(created):
            if folder.fresh:
                folder.discard()
        raise
    finally:
        _WATCHED.remove(created)


def _missing_folders(path: str) -> List[str]:
    """``path`` and its parents that do not exist yet, deepest first."""
    missing, path = [], os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def load_checkpoint(path: str, key: str = "load_path") -> Dict[str, Any]:
    """Load a checkpoint on CPU without running code from it; a bad or missing file names ``key`` to set."""
    return read_checkpoint(path, key, "a ckpt_latest.pth or ckpt_best.pth of a finished run "
                                      "(they live in log/<task>/<exp>-<time>/)")


class _StdoutHandler(logging.StreamHandler):
    """A handler writing to whatever ``sys.stdout`` is at each record (a caller may have replaced it since)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ sets it; the property always reads sys.stdout
        pass


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
