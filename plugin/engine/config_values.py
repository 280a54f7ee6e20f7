"""Type and range checks of the documented config values (batch sizes, epochs, learning rates, ...).

:data:`VALUE_RULES` maps a dotted key to a test, a description of what the value must be, and whether
null is allowed; :func:`validate_values` runs them when the config loads, so ``epochs=abc`` or
``batch_size=0`` is one sentence before anything is built.
"""
import re
from typing import Any, Callable, Optional, Tuple

from openpoints.utils import EasyConfig

from ..errors import ConfigError


def _integer(minimum: int) -> Tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum), f"an integer >= {minimum}"


def _positive_number() -> Tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0), "a number > 0"


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
# documented keys whose values are checked when the config loads: key -> (test, what it must be, may be null)
VALUE_RULES = {
    "batch_size": (*_integer(1), False),
    "val_batch_size": (*_integer(1), False),
    "epochs": (*_integer(1), False),
    "val_freq": (*_integer(1), False),
    "warmup_epochs": (*_integer(0), False),
    "lr": (*_positive_number(), False),
    "lr_image": (*_positive_number(), True),
    "min_lr": ((lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0), "a number >= 0", True),
    "grad_norm_clip": (*_positive_number(), True),
    "num_points": (*_integer(1), True),
    "num_classes": (*_integer(1), True),
    "seed": (*_integer(0), True),
    "dataset.common.num_points": (*_integer(1), True),
    "dataloader.num_workers": (*_integer(0), False),
    "device": ((lambda v: isinstance(v, str) and _DEVICE.fullmatch(v) is not None), "auto, cpu, cuda or cuda:N",
               False),
    "strict_keys": ((lambda v: isinstance(v, bool)), "True or False", False),
    "grad_accum_steps": (*_integer(1), False),
    "sched_on_epoch": ((lambda v: isinstance(v, bool)), "True or False", False),
    "amp": ((lambda v: v is False or v in ("auto", "bf16", "fp16", "off")), "auto, bf16, fp16 or off", False),
    "train.select": ((lambda v: v in ("holdout", "last")), "holdout or last", False),
    "train.holdout": ((lambda v: isinstance(v, float) and 0 < v < 1), "a share in (0, 1)", False),
}


def _lookup(cfg: EasyConfig, key: str) -> Tuple[bool, Any]:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def validate_values(cfg: EasyConfig, rules: Optional[dict] = None) -> None:
    """Check the type and range of every documented key in ``rules`` (default :data:`VALUE_RULES`).

    Raises:
        ConfigError: one sentence naming the key, the value and what it must be.
    """
    for key, (test, must_be, nullable) in (rules or VALUE_RULES).items():
        present, value = _lookup(cfg, key)
        if not present or (value is None and nullable):
            continue
        if not test(value):
            raise ConfigError(f"{key} is {value!r} but must be {must_be}{' or null' if nullable else ''}: "
                              f"set {key} to such a value in the YAML or with {key}=VALUE.")


# ---- nested keys: the blocks that registered classes receive ------------------------------------------------------
