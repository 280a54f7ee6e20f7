"""``resume`` mode: continue a killed or finished run from its newest checkpoint."""
import logging
import os
from typing import Any, Dict

from openpoints.utils import EasyConfig

from ...errors import ConfigError
from ...models.heads.gdpa import is_adapter_config
from ..config_keys import upgrade_renamed_keys
from ..registry import RUNNERS
from ..run_folder import CHECKPOINTS, RunFolder

LOGGER = logging.getLogger("plugin")


RESUME_KEYS = ("mode", "run_dir", "epochs", "root_dir", "task", "exp", "load_path")  # select or extend, nothing else


@RUNNERS.register_module(name="resume")
class ResumeRunner:
    """Continue a killed or finished run in its own folder, with the config it was started with.

    The run is ``run_dir`` if set, else the folder of ``load_path`` if set, else the newest run of
    exactly the same task and experiment under ``root_dir``. It continues from its newest readable
    checkpoint, whose ``mode`` (``train``, ``pretrain``, ...) picks the runner and whose stored config
    is the run's config: the experiment file is not re-read, ``cfg.yaml`` is not rewritten, and the
    only change accepted is ``epochs=N`` (to extend a finished run); any other override is refused.
    A run that another live process is writing is refused too (see :class:`RunFolder`).

    Args:
        cfg: the command's config (only ``RESUME_KEYS`` are read from it).
    """

    def __init__(self, cfg: Dict[str, Any]):
        run_dir = cfg.get("run_dir") or (os.path.dirname(cfg.load_path) if cfg.get("load_path") else None)
        run_dir = run_dir or RunFolder.latest(cfg.root_dir, cfg.task, cfg.exp)
        if not run_dir or not any(os.path.isfile(os.path.join(run_dir, name)) for name in CHECKPOINTS):
            raise ConfigError(f"No run to resume for {cfg.task}/{cfg.exp} (looked in "
                              f"{run_dir or os.path.join(cfg.root_dir, cfg.task)}): set run_dir to a run folder "
                              f"holding ckpt_latest.pth, or start one with mode=train.")
        changes = [o for o in cfg.get("overrides") or [] if o.lstrip("-+").split("=", 1)[0] not in RESUME_KEYS]
        if changes:
            raise ConfigError(f"mode=resume continues a run with the config it was started with, so '{changes[0]}' "
                              f"cannot be applied: drop it (resume accepts only epochs=N to extend the run and "
                              f"run_dir=... to pick one), or start a new run with it.")
        folder = RunFolder(run_dir)  # takes the run's lock: a live writer is refused here
        path, state = folder.newest_checkpoint()
        if state is None or not isinstance(state.get("cfg"), dict):
            folder.release()
            raise ConfigError(f"No readable checkpoint with its run config in {run_dir}: set run_dir to another "
                              f"run folder, or start a new run.")
        folder.sweep_partial_writes()
        run_cfg = EasyConfig()
        run_cfg.update(upgrade_renamed_keys(_plain_config(state["cfg"])))
        extended = any(o.lstrip("-+").startswith("epochs=") for o in cfg.get("overrides") or [])
        if extended:
            run_cfg.epochs = cfg.epochs
        LOGGER.info(f"resume: {os.path.basename(path)} after epoch {state['epoch']} of {run_dir}"
                    + (f", extended to {run_cfg.epochs} epochs" if extended else ""))
        self.runner = RUNNERS.get(_mode_of(state, run_cfg))(run_cfg, folder, state)

    def run(self) -> Dict[str, Any]:
        return self.runner.run()


def _mode_of(state: Dict[str, Any], run_cfg: Dict[str, Any]) -> str:
    """The mode that continues ``state``; GDPA checkpoints written before the ``gdpa`` mode existed say ``finetune``."""
    mode = state.get("mode") or "train"
    return "gdpa" if mode == "finetune" and is_adapter_config(run_cfg) else mode


def _plain_config(node: Any) -> Any:
    """A stored config without the objects older runs left in it (OpenPoints wrote built transforms there)."""
    if isinstance(node, dict):
        return {key: _plain_config(value) for key, value in node.items()
                if value is None or isinstance(value, (bool, int, float, str, list, tuple, dict))}
    if isinstance(node, (list, tuple)):
        return [_plain_config(item) for item in node]
    return node
