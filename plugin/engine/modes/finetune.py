"""``finetune`` mode: ``train`` with ``model.encoder`` initialised from a pre-trained checkpoint."""
import logging
from typing import Any, Dict

from ...errors import ConfigError
from ...models.heads.gdpa import is_adapter_config
from ..encoder_weights import load_encoder_state, load_into_encoder
from ..registry import RUNNERS
from ..run_folder import RunFolder
from .train import TrainRunner

LOGGER = logging.getLogger("plugin")


@RUNNERS.register_module(name="finetune")
class FinetuneRunner(TrainRunner):
    """Supervised training of ``cfg.model`` (``BaseCls``) whose encoder starts from ``pretrained_path``.

    CLIP2Point's adapter (``model.NAME: GatedDualPathAdapter``) trains with ``mode=gdpa`` instead.

    ``pretrained_path`` is a pre-training checkpoint (``encoder``), a supervised one (``model`` with
    ``encoder.*``) or a bare encoder state dict. Every encoder tensor must be in it (unexpected ones are
    logged and ignored). Training, validation, checkpoints and the test figure are those of ``train``;
    ``metrics.json`` also records the checkpoint and ``encoder_tensors_loaded``. A killed run continues
    with ``mode=resume``, which restores the whole model from ``ckpt_latest.pth`` instead of reloading
    the pre-trained encoder.

    Args:
        cfg: the run config.
        folder: the run folder; a new one by default.
        state: a checkpoint to continue from (``resume``).
    """

    resume_mode = "finetune"

    def __init__(self, cfg: Dict[str, Any], folder: RunFolder = None, state: Dict[str, Any] = None):
        if is_adapter_config(cfg):
            raise ConfigError("model.NAME GatedDualPathAdapter trains with mode=gdpa (CLIP2Point's adapter on the "
                              "whole train split), not mode=finetune: set mode=gdpa.")
        path = cfg.get("pretrained_path")
        if not path:
            raise ConfigError("mode=finetune needs pretrained_path: set it to the ckpt_best.pth of a pre-training "
                              "run (or any checkpoint holding the encoder's tensors).")
        # a missing file fails before the run folder exists; a resumed run restores its own weights
        encoder_state = load_encoder_state(path, "pretrained_path") if state is None else None
        super().__init__(cfg, folder, state)
        self.encoder_report = None
        if encoder_state is not None:
            self.encoder_report = load_into_encoder(self.model.encoder, encoder_state, path)
            LOGGER.info(self.encoder_report.summary())

    def finish(self, metrics: Dict[str, Any]) -> Dict[str, Any]:
        """``train``'s figures plus the pre-trained checkpoint and the count of encoder tensors loaded."""
        loaded = self.encoder_report.count if self.encoder_report is not None else "restored from ckpt_latest.pth"
        return super().finish(dict(metrics, pretrained_path=self.cfg.pretrained_path, encoder_tensors_loaded=loaded))
