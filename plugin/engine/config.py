"""Config loading the PointNeXt way, with validation of keys.

A config is OpenPoints' :class:`EasyConfig` loaded with ``recursive=True``: the experiment file is
layered over every ``default.yaml`` found in its folder and the folders above it (``cfgs/default.yaml``
first). Command-line ``key=value`` overrides are applied last.

Validation: a top-level key of the experiment file, and every override, must name a key that the
defaults define (``cfgs/default.yaml`` documents them all). An override that adds a new key on
purpose is written ``+key=value``. A wrong key raises :class:`~plugin.errors.ConfigError` listing the
valid choices.

Values: the documented keys of :data:`VALUE_RULES` (batch sizes, epochs, learning rates, point
counts, device, ...) are checked for type and range when the config loads.

Staged workflows: a ``stage_cfgs`` block maps a mode to the keys that differ for that stage (its
dataset, model head, epochs, ...). They are merged for the effective ``mode`` before the
command-line overrides, so ``mode=svm`` runs the SVM stage of a workflow file alone.
"""
import difflib
import os
import re
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

import yaml
from openpoints.utils import EasyConfig

from ..errors import ConfigError


def _default_chain(cfg_path: str) -> List[str]:
    """The ``default.yaml`` files that ``EasyConfig.load(recursive=True)`` layers under ``cfg_path``."""
    chain, folder = [], os.path.dirname(os.path.abspath(cfg_path))
    while True:
        candidate = os.path.join(folder, "default.yaml")
        if os.path.isfile(candidate) and os.path.abspath(candidate) != os.path.abspath(cfg_path):
            chain.append(candidate)
        parent = os.path.dirname(folder)
        if parent == folder:
            return chain
        folder = parent


def _read_yaml(path: str) -> dict:
    try:
        with open(path) as f:
            content = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML ({e.__class__.__name__} at "
                          f"{getattr(e, 'problem_mark', '?')}): fix the syntax of that file.") from None
    if content is not None and not isinstance(content, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values, not a {type(content).__name__}.")
    return content or {}


def unknown_key_message(key: str, valid: Iterable[str], where: str) -> str:
    """One sentence naming the wrong key, the closest valid keys and all valid ones."""
    valid = sorted(valid)
    close = difflib.get_close_matches(key.split(".")[-1], valid, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    choices = f"use one of {', '.join(valid)}" if valid else f"'{key.rsplit('.', 1)[0]}' takes no sub-keys here"
    return (f"Unknown config key '{key}' in {where}{hint}: {choices}, "
            f"or write +{key}=VALUE on the command line to add a new key on purpose.")


YAML_NULLS = ("null", "~")  # an override's value spelled as YAML's null means None, as in the files


def apply_overrides(cfg: EasyConfig, overrides: Sequence[str]) -> None:
    """Apply ``key=value`` overrides in place; each key must exist unless written ``+key=value``.

    Values are Python literals (OpenPoints' parsing); ``null`` and ``~`` give None, as in YAML.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"Override '{item}' has no '=': write overrides as key=value, "
                              f"for example epochs=5.")
        key, value = item.split("=", 1)
        key = key.lstrip("-")
        add = key.startswith("+")
        key = key.lstrip("+")
        node, parts = cfg, key.split(".")
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if not add and (not isinstance(node, dict) or part not in node):
                keys = node.keys() if isinstance(node, dict) else []
                raise ConfigError(unknown_key_message(".".join(parts[:depth + 1]), keys,
                                                      "the command-line overrides"))
            if not last:
                node = node.setdefault(part, EasyConfig())
        cfg.update([f"{key}={'None' if value.strip() in YAML_NULLS else value}"])


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


def load_config(cfg_path: str, overrides: Sequence[str] = ()) -> EasyConfig:
    """Load ``cfg_path`` over its ``default.yaml`` chain, validate it and apply ``overrides``.

    Args:
        cfg_path: the experiment YAML, e.g. ``cfgs/modelnet40/pointnext-s.yaml``.
        overrides: ``key=value`` strings (dotted keys, values parsed as Python literals).

    Returns:
        The merged config, with ``cfg_path``, ``overrides``, ``task`` (the experiment's folder name unless set) and
        ``exp`` (the file name without extension) filled in.
    """
    if not os.path.isfile(cfg_path):
        raise ConfigError(f"Config file '{cfg_path}' does not exist: pass an existing YAML with --cfg, "
                          f"for example cfgs/modelnet40/pointnext-s.yaml.")
    chain = _default_chain(cfg_path)
    known = set()
    for default in chain:
        known.update(_read_yaml(default))
    for key in _read_yaml(cfg_path):
        if known and key not in known:
            raise ConfigError(unknown_key_message(key, known, cfg_path))
    cfg = EasyConfig()
    cfg.load(cfg_path, recursive=True)
    # stage_cfgs.* overrides first, then the effective mode's stage block, then the other overrides
    stage_overrides = [o for o in overrides if o.lstrip("-+").startswith("stage_cfgs.")]
    apply_overrides(cfg, stage_overrides)
    modes = [o.split("=", 1)[1] for o in overrides if o.lstrip("-").split("=", 1)[0] == "mode" and "=" in o]
    stage = (cfg.get("stage_cfgs") or {}).get(modes[-1] if modes else cfg.mode)
    if stage:
        cfg.update(stage.dict() if hasattr(stage, "dict") else dict(stage))
    apply_overrides(cfg, [o for o in overrides if o not in stage_overrides])
    validate_values(cfg)
    cfg.cfg_path = cfg_path
    cfg.overrides = list(overrides)
    cfg.task = cfg.get("task") or os.path.basename(os.path.dirname(os.path.abspath(cfg_path)))
    cfg.exp = cfg.get("exp") or os.path.splitext(os.path.basename(cfg_path))[0]
    return cfg
