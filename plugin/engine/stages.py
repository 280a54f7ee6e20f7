"""``stages`` mode: run a workflow's stages in order, each from the previous stage's checkpoint.

A workflow file lists ``stages`` (e.g. ``[pretrain, svm, finetune]``) and a ``stage_cfgs`` block per
stage (see :mod:`plugin.engine.config`). Each stage is the same file loaded with ``mode=<stage>``
and the user's overrides, in a run folder of its own (``<exp>-<stage>-<time>``); the encoder
checkpoint of a ``pretrain`` stage becomes ``load_path`` of later ``svm``/``extract`` stages and
``pretrained_path`` of ``finetune``, ``zeroshot`` and ``fewshot`` (CLIP2Point's depth encoder). The
workflow's own folder gets every stage's figures.

Before the first stage starts (and before the workflow's folder exists), every stage's config is
loaded and every ``data_dir`` of its ``dataset`` must exist, so a workflow missing the data of a later
stage stops at once, naming that stage and path, instead of after training the earlier ones. A stage
that reports a checkpoint it did not write stops the workflow there, naming the stage.
"""
import logging
import os
from typing import Any, Dict, List, Mapping, Tuple

from ..errors import ConfigError, DataNotFoundError, WeightsNotFoundError
from .config import load_config
from .registry import RUNNERS, runner_for
from .runner import Runner

LOGGER = logging.getLogger("plugin")
CHECKPOINT_KEY = {"svm": "load_path", "extract": "load_path", "test": "load_path", "finetune": "pretrained_path",
                  "zeroshot": "pretrained_path", "fewshot": "pretrained_path"}


@RUNNERS.register_module(name="stages")
class StagesRunner(Runner):
    """Run ``stages`` in order; see the module docstring.

    Args:
        cfg: the workflow config (``stages``, ``stage_cfgs``).
    """

    def __init__(self, cfg: Dict[str, Any]):
        self.stages = check_workflow(cfg)  # before the workflow's folder exists
        super().__init__(cfg)

    def run(self) -> Dict[str, Any]:
        results, checkpoint = {}, None
        for number, stage in enumerate(self.stages, 1):
            LOGGER.info(f"===== stage {number}/{len(self.stages)}: {stage} =====")
            chained = [f"{CHECKPOINT_KEY[stage]}={checkpoint}"] if checkpoint and stage in CHECKPOINT_KEY else []
            results[stage] = runner_for(stage)(stage_config(self.cfg, stage, *chained)).run()
            self.folder.keep()  # it logs a finished stage now
            if results[stage].get("encoder_checkpoint"):
                checkpoint = results[stage]["encoder_checkpoint"]
                if not os.path.isfile(checkpoint):
                    raise WeightsNotFoundError(f"Stage {number} ({stage}) finished without writing its checkpoint "
                                               f"{checkpoint}, which later stages load: see "
                                               f"{results[stage].get('run_dir')}/log.txt and run that stage again.")
        self.folder.attach_log()
        return self.finish({"stages": results})


def stage_config(cfg: Mapping[str, Any], stage: str, *extra: str) -> Dict[str, Any]:
    """The config of ``stage``: the workflow file with ``mode=<stage>``, the user's overrides and ``extra``.

    Args:
        cfg: the workflow config (``cfg_path``, ``overrides``, ``exp``).
        stage: the stage's mode.
        *extra: further overrides (the checkpoint chained from an earlier stage).
    """
    return load_config(cfg["cfg_path"], [*cfg["overrides"], f"mode={stage}", f"exp={cfg['exp']}-{stage}", *extra])


def check_workflow(cfg: Mapping[str, Any]) -> List[str]:
    """The workflow's stages, once every name is a mode and every stage's data folders exist.

    Args:
        cfg: the workflow config (``stages``, ``cfg_path``, ``overrides``, ``exp``).

    Raises:
        ConfigError: no stages, or a stage that is not a mode.
        DataNotFoundError: a stage's ``data_dir`` does not exist; the message names the stage and the path.
    """
    stages: List[str] = list(cfg.get("stages") or [])
    if not stages or "stages" in stages:
        raise ConfigError("A workflow needs a list of stages: set stages, e.g. [pretrain, svm, finetune].")
    for stage in stages:
        runner_for(stage)  # fail on a wrong stage name before any work starts
    for number, stage in enumerate(stages, 1):
        for key, path in data_folders(stage_config(cfg, stage).get("dataset")):
            if not os.path.exists(path):
                raise DataNotFoundError(f"Stage {number} ({stage}) reads {key}='{path}', which does not exist, so no "
                                        f"stage was run: prepare that data or set stage_cfgs.{stage}.{key}.")
    return stages


def data_folders(dataset: Any) -> List[Tuple[str, str]]:
    """``(key, path)`` of every ``data_dir`` in a dataset config (``common`` and the split blocks).

    Args:
        dataset: the ``dataset`` block of a config, or None.
    """
    if not isinstance(dataset, Mapping):
        return []
    return [(f"dataset.{block}.data_dir", str(args["data_dir"])) for block, args in dataset.items()
            if isinstance(args, Mapping) and args.get("data_dir")]
