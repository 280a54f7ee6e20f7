"""``stages`` mode: run a workflow's stages in order, each from the previous stage's checkpoint.

A workflow file lists ``stages`` (e.g. ``[pretrain, svm, finetune]``) and a ``stage_cfgs`` block per
stage (see :mod:`plugin.engine.config`). Each stage is the same file loaded with ``mode=<stage>``
and the user's overrides, in a run folder of its own (``<exp>-<stage>-<time>``); the encoder
checkpoint of a ``pretrain`` stage becomes ``load_path`` of later ``svm``/``extract`` stages and
``pretrained_path`` of ``finetune``, ``zeroshot`` and ``fewshot`` (CLIP2Point's depth encoder). Which
config key a stage reads its checkpoint from is a property of that stage's mode (:data:`CHECKPOINT_KEY`);
what the checkpoint holds is read from the checkpoint itself (its ``exports`` entry, or for older
checkpoints its keys: :func:`plugin.io.checkpoint_export`), and a stage whose mode reads another export
(:func:`reads`: ``svm``/``extract``/``finetune`` an ``encoder``, ``fewshot`` a ``depth_encoder``,
``zeroshot``/``retrieval`` the export of their own ``model.NAME``, else ``zeroshot`` a ``depth_encoder``)
stops the workflow with one sentence. The workflow's own folder gets every stage's
figures.

Before the first stage starts (and before the workflow's folder exists), every stage's config is
loaded and every ``data_dir`` of its ``dataset`` must exist, so a workflow missing the data of a later
stage stops at once, naming that stage and path, instead of after training the earlier ones; so does a
stage that reads another export than the model of the pretrain stage before it writes (its class's
``exports``). A stage that reports a checkpoint it did not write stops the workflow there, naming the stage.
"""
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

from openpoints.models.build import MODELS

from ...errors import ConfigError, DataNotFoundError, WeightsNotFoundError
from ...io import checkpoint_export, read_checkpoint
from ...models.base import PretextModel
from ..config import load_config
from ..registry import RUNNERS, runner_for
from ..runner import Runner

LOGGER = logging.getLogger("plugin")
CHECKPOINT_KEY = {"svm": "load_path", "extract": "load_path", "test": "load_path", "finetune": "pretrained_path",
                  "zeroshot": "pretrained_path", "fewshot": "pretrained_path",
                  "gdpa": "pretrained_path", "retrieval": "pretrained_path"}
# the export a mode reads from the chained checkpoint; None: a whole model's checkpoint (``test``), no export
READS = {"svm": "encoder", "extract": "encoder", "test": None, "finetune": "encoder", "zeroshot": "depth_encoder",
         "fewshot": "depth_encoder", "gdpa": "depth_encoder", "retrieval": "encoder"}
# modes that evaluate the stage's own pretext model (model.NAME) when it has one: they read that class's export
OWN_MODEL_MODES = ("zeroshot", "retrieval")
EXPORTED_BY = {"encoder": "PicAtPoint, I2PMAE or CLIPAlign", "depth_encoder": "CLIP2Point"}  # for the messages




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
            chained = []
            if checkpoint and stage in CHECKPOINT_KEY:
                check_export(checkpoint, stage, number, reads(stage, stage_config(self.cfg, stage)))
                chained = [f"{CHECKPOINT_KEY[stage]}={checkpoint}"]
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


def check_export(checkpoint: str, stage: str, number: int, wanted: Optional[str]) -> None:
    """Refuse to chain ``checkpoint`` into ``stage`` when it does not hold the export that mode reads.

    Args:
        checkpoint: the checkpoint an earlier stage wrote.
        stage: the mode of the stage that would read it.
        number: the stage's number, for the message.
        wanted: the export the stage reads (:func:`reads`); None: a whole model's checkpoint.

    Raises:
        ConfigError: the checkpoint's export (:func:`plugin.io.checkpoint_export`) is not ``wanted``.
    """
    exports = checkpoint_export(read_checkpoint(checkpoint, CHECKPOINT_KEY[stage]))
    if exports != wanted:
        raise ConfigError(_misfit(number, stage, wanted, checkpoint,
                                  f"exports '{exports}'" if exports else "exports nothing"))


def _misfit(number: int, stage: str, wanted: Optional[str], source: str, holds: str) -> str:
    """The one sentence for a stage that reads ``wanted`` while ``source`` ``holds`` another export."""
    key = CHECKPOINT_KEY[stage]
    if wanted is None:
        return (f"Stage {number} ({stage}) reads a whole classifier from {key}, but {source} {holds}: drop the "
                f"{stage} stage (finetune reports its test accuracy).")
    return (f"Stage {number} ({stage}) reads the export '{wanted}' from {key}, but {source} {holds}: pre-train a "
            f"model that exports '{wanted}' (model.NAME {EXPORTED_BY[wanted]}) before it.")


def planned_export(stage_cfg: Mapping[str, Any]) -> Optional[str]:
    """The export a ``pretrain`` stage's model will write (its class's ``exports``), or None when its
    ``model.NAME`` is no :class:`~plugin.models.base.PretextModel` (the pretrain mode refuses it itself)."""
    name = (stage_cfg.get("model") or {}).get("NAME")
    cls = MODELS.get(name) if isinstance(name, str) else None
    return cls.exports if isinstance(cls, type) and issubclass(cls, PretextModel) else None


def reads(stage: str, stage_cfg: Mapping[str, Any]) -> Optional[str]:
    """The export ``stage`` reads from a chained checkpoint: its own pretext model's (``zeroshot`` and
    ``retrieval`` with ``model.NAME``), else the mode's (:data:`READS`); None: a whole model's checkpoint.

    Args:
        stage: the stage's mode.
        stage_cfg: the stage's config.
    """
    own = planned_export(stage_cfg) if stage in OWN_MODEL_MODES else None
    return own or READS.get(stage)


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
        ConfigError: no stages, a stage that is not a mode, or a stage whose mode reads another export than
            the model of the pretrain stage before it writes (its class's ``exports``).
        DataNotFoundError: a stage's ``data_dir`` does not exist; the message names the stage and the path.
    """
    stages: List[str] = list(cfg.get("stages") or [])
    if not stages or "stages" in stages:
        raise ConfigError("A workflow needs a list of stages: set stages, e.g. [pretrain, svm, finetune].")
    for stage in stages:
        runner_for(stage)  # fail on a wrong stage name before any work starts
    planned = None  # (stage number, export) of the latest pretrain stage
    for number, stage in enumerate(stages, 1):
        config = stage_config(cfg, stage)
        for key, path in data_folders(config.get("dataset")):
            if not os.path.exists(path):
                raise DataNotFoundError(f"Stage {number} ({stage}) reads {key}='{path}', which does not exist, so no "
                                        f"stage was run: prepare that data or set stage_cfgs.{stage}.{key}.")
        if stage == "pretrain":
            export = planned_export(config)
            planned = (number, export) if export else None
        elif planned and stage in CHECKPOINT_KEY and planned[1] != reads(stage, config):
            source = f"the checkpoint of stage {planned[0]} (pretrain)"
            raise ConfigError(_misfit(number, stage, reads(stage, config), source, f"will export '{planned[1]}'"))
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
