"""Hooks of :class:`~plugin.engine.loop.TrainingLoop` that several modes share."""
import logging
from typing import Any, Dict

from ..models.ema import ModelEma
from .loop import Hook, TrainingLoop

LOGGER = logging.getLogger("plugin")


class EmaHook(Hook):
    """Keep an exponential moving average of the trained weights (timm ``ModelEmaV3``, :mod:`plugin.models.ema`).

    The average is updated after every optimizer update with the momentum its schedule gives at
    ``loop.updates``, and saved in checkpoints, so a resumed run continues it.

    Args:
        ema: the average, built from the run's ``ema`` block (:func:`~plugin.models.ema.build_ema`).
    """

    name = "ema"

    def __init__(self, ema: ModelEma):
        self.ema = ema

    def after_step(self, loop: TrainingLoop, logs: Dict[str, float]) -> None:
        self.ema.update(loop.model, loop.updates)

    def after_epoch(self, loop: TrainingLoop, epoch: int, logs: Dict[str, float]) -> None:
        logs["ema_momentum"] = self.ema.momentum

    def state_dict(self) -> Dict[str, Any]:
        return self.ema.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.ema.load_state_dict(state)
