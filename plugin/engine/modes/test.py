"""``test`` mode: evaluate a trained classifier on the test split."""
import logging
import os
from typing import Any, Dict

from ...errors import ConfigError
from .. import builders
from ..data import build_dataloader
from ..evaluation import evaluate
from ..registry import RUNNERS
from ..run_folder import RunFolder, load_checkpoint
from ..runner import Runner

LOGGER = logging.getLogger("plugin")


@RUNNERS.register_module(name="test")
class TestRunner(Runner):
    """Evaluate a trained checkpoint (``load_path``, else the newest run's ``ckpt_best.pth``) on the test split."""

    def run(self) -> Dict[str, Any]:
        cfg = self.cfg
        path = cfg.get("load_path")
        if not path:
            latest = RunFolder.latest(cfg.root_dir, cfg.task, cfg.exp)
            if latest is None:
                raise ConfigError(f"No trained run of {cfg.task}/{cfg.exp} in {os.path.join(cfg.root_dir, cfg.task)}: "
                                  f"set load_path to a ckpt_best.pth, or train one first with mode=train.")
            path = os.path.join(latest, "ckpt_best.pth")
        state = load_checkpoint(path)
        model = builders.build_model(cfg).to(self.device)
        model.load_state_dict(state["model"])
        test = evaluate(model, build_dataloader(cfg, "test"), self.device, self.in_channels,
                        cfg.get("num_points"), cfg.get("feature_keys"), cfg.num_classes, desc="test")
        return self.finish({"checkpoint": path, "test_oa": test["oa"], "test_macc": test["macc"]})
