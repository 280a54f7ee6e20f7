"""``stages`` mode: run a workflow's stages in order, each from the previous stage's checkpoint.

A workflow file lists ``stages`` (e.g. ``[pretrain, svm, finetune]``) and a ``stage_cfgs`` block per
stage (see :mod:`plugin.engine.config`). Each stage is the same file loaded with ``mode=<stage>``
and the user's overrides, in a run folder of its own (``<exp>-<stage>-<time>``); the encoder
checkpoint of a ``pretrain`` stage becomes ``load_path`` of later ``svm``/``extract`` stages and
``pretrained_path`` of ``finetune``, ``zeroshot`` and ``fewshot`` (CLIP2Point's depth encoder). The workflow's own folder gets every stage's figures.
"""
import logging
from typing import Any, Dict, List

from ..errors import ConfigError
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

    def run(self) -> Dict[str, Any]:
        stages: List[str] = list(self.cfg.get("stages") or [])
        if not stages or "stages" in stages:
            raise ConfigError("A workflow needs a list of stages: set stages, e.g. [pretrain, svm, finetune].")
        for stage in stages:
            runner_for(stage)  # fail on a wrong stage name before any work starts
        results, checkpoint = {}, None
        for number, stage in enumerate(stages, 1):
            LOGGER.info(f"===== stage {number}/{len(stages)}: {stage} =====")
            chained = [f"{CHECKPOINT_KEY[stage]}={checkpoint}"] if checkpoint and stage in CHECKPOINT_KEY else []
            cfg = load_config(self.cfg.cfg_path, [*self.cfg.overrides, f"mode={stage}",
                                                  f"exp={self.cfg.exp}-{stage}", *chained])
            results[stage] = runner_for(stage)(cfg).run()
            checkpoint = results[stage].get("encoder_checkpoint", checkpoint)
        self.folder.attach_log()
        return self.finish({"stages": results})
