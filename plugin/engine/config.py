"""Config loading the PointNeXt way, with validation of keys.

A config is OpenPoints' :class:`EasyConfig` layered as its ``load(recursive=True)`` does: the experiment file
over every ``default.yaml`` found in its folder and the folders above it (``cfgs/default.yaml`` first).
Command-line ``key=value`` overrides are applied last.

Validation: a top-level key of the experiment file, and every override, must name a key that the
defaults define (``cfgs/default.yaml`` documents them all). An override that adds a new key on
purpose is written ``+key=value``. A wrong key raises :class:`~plugin.errors.ConfigError` listing the
valid choices.

Includes: a mapping's ``_include`` key (a path or a list of paths, relative to the folder of the file that
holds it) names YAML fragments merged under that mapping: the fragments in order, then the mapping's own
keys over them, nested mappings merged key by key as layers over the defaults are. Fragments may include
others (a cycle is refused) and live in ``cfgs/_blocks/``; they work at the top level of experiment files,
``default.yaml`` files and fragments, and inside nested blocks such as ``stage_cfgs.<mode>``. A fragment
included at the top level is checked like the file including it. ``_include`` never reaches the config.

Values: the documented keys are checked for type and range (:mod:`.config_values`); nested keys
against the constructors of the classes their blocks configure (:mod:`.config_keys`).

Staged workflows: a ``stage_cfgs`` block maps a mode to the keys that differ for that stage (its
dataset, model head, epochs, ...). They are merged for the effective ``mode`` before the
command-line overrides, so ``mode=svm`` runs the SVM stage of a workflow file alone. A stage block
that names its own ``model.NAME`` takes from the workflow's shared ``model`` block only the keys
its class takes (the others configure another stage's model). Loading a workflow (``mode: stages``)
loads every stage's config too, so a wrong nested key fails before the first stage starts.
"""
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set

import yaml
from openpoints.utils import EasyConfig

from ..errors import ConfigError
from .config_keys import keep_stage_model_keys, unknown_key_message, validate_keys
from .config_values import validate_values


def _default_chain(cfg_path: str) -> List[str]:
    """The ``default.yaml`` files layered under ``cfg_path``, nearest first (``EasyConfig.load(recursive=True)``'s)."""
    chain, folder = [], os.path.dirname(os.path.abspath(cfg_path))
    while True:
        candidate = os.path.join(folder, "default.yaml")
        if os.path.isfile(candidate) and os.path.abspath(candidate) != os.path.abspath(cfg_path):
            chain.append(candidate)
        parent = os.path.dirname(folder)
        if parent == folder:
            return chain
        folder = parent


def _read_yaml(path: str, included_by: Optional[str] = None) -> dict:
    """The mapping in the YAML file ``path`` ({} when empty); ``included_by`` names its includer in errors."""
    try:
        with open(path) as f:
            content = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML ({e.__class__.__name__} at "
                          f"{getattr(e, 'problem_mark', '?')}): fix the syntax of that file.") from None
    if content is not None and not isinstance(content, dict):
        where = f" (it is included by {included_by})" if included_by else ""
        raise ConfigError(f"{path} must hold a mapping of keys to values, not a {type(content).__name__}{where}.")
    return content or {}


INCLUDE = "_include"  # a mapping's key naming the YAML fragments merged under it (see the module docstring)


def _resolve(block: Mapping[str, Any], path: str, includers: Sequence[str],
             known: Optional[Set[str]] = None) -> Dict[str, Any]:
    """``block`` with the fragments its ``_include`` names merged under it, in every nested mapping too.

    Args:
        block: a mapping read from the file ``path``.
        path: that file; include paths are relative to its folder.
        includers: the files including ``path``, outermost first, and ``path`` last (one named again is a cycle).
        known: the valid top-level keys when ``block`` is a file's top level and they are checked (None: not).
    """
    names = block.get(INCLUDE) or []
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ConfigError(f"{INCLUDE} in {path} is {names!r}: set it to a path or a list of paths of YAML "
                          f"fragments, relative to the folder of {path}.")
    merged = EasyConfig()  # EasyConfig.update merges as the layers over the defaults are: mappings key by key
    seen = [os.path.abspath(p) for p in includers]
    for name in names:
        fragment = os.path.normpath(os.path.join(os.path.dirname(path), name))
        if os.path.abspath(fragment) in seen:
            cycle = [*includers[seen.index(os.path.abspath(fragment)):], fragment]
            raise ConfigError(f"{fragment} includes itself ({' -> '.join(cycle)}): remove one of the {INCLUDE} "
                              f"entries of this cycle.")
        if not os.path.isfile(fragment):
            raise ConfigError(f"{path} includes '{name}', but {fragment} does not exist: fix that {INCLUDE} "
                              f"entry (paths are relative to the folder of the file that includes them).")
        merged.update(_resolve(_read_yaml(fragment, path), fragment, [*includers, fragment], known))
    for key in block:
        if known and key != INCLUDE and key not in known:
            raise ConfigError(unknown_key_message(key, known, path))
    merged.update({key: _resolve(value, path, includers) if isinstance(value, Mapping) else value
                   for key, value in block.items() if key != INCLUDE})
    return merged


def resolve_includes(path: str, known: Optional[Set[str]] = None) -> Dict[str, Any]:
    """The mapping in the YAML file ``path`` with the fragments its ``_include`` keys name merged in.

    Args:
        path: a config file (experiment, ``default.yaml`` or fragment).
        known: the valid top-level keys, checked in ``path`` and its top-level fragments; None: not checked.
    """
    return _resolve(_read_yaml(path), path, [os.path.normpath(path)], known)


YAML_NULLS = ("null", "~")  # an override's value spelled as YAML's null means None, as in the files
UNSET = ("", "none", "null")  # spellings of an unset optional path on the command line


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
                if add and not isinstance(node.get(part), dict):  # +ema.decay=... fills a null block
                    node[part] = EasyConfig()
                node = node.setdefault(part, EasyConfig())
        cfg.update([f"{key}={'None' if value.strip() in YAML_NULLS else value}"])



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
    defaults = [resolve_includes(path) for path in reversed(_default_chain(cfg_path))]  # cfgs/default.yaml first
    known = {key for default in defaults for key in default}
    cfg = EasyConfig()
    for layer in [*defaults, resolve_includes(cfg_path, known)]:
        cfg.update(layer)
    # stage_cfgs.* overrides first, then the effective mode's stage block, then the other overrides
    stage_overrides = [o for o in overrides if o.lstrip("-+").startswith("stage_cfgs.")]
    apply_overrides(cfg, stage_overrides)
    modes = [o.split("=", 1)[1] for o in overrides if o.lstrip("-").split("=", 1)[0] == "mode" and "=" in o]
    stage = (cfg.get("stage_cfgs") or {}).get(modes[-1] if modes else cfg.mode)
    stage = (stage.dict() if hasattr(stage, "dict") else dict(stage)) if stage else {}
    cfg.update(stage)
    apply_overrides(cfg, [o for o in overrides if o not in stage_overrides])
    validate_values(cfg)
    keep_stage_model_keys(cfg, stage)
    validate_keys(cfg)
    if cfg.mode == "stages":  # every stage's keys, before the first stage starts
        for name in [s for s in cfg.get("stages") or [] if isinstance(s, str) and s != "stages"]:
            try:
                load_config(cfg_path, [*overrides, f"mode={name}"])
            except ConfigError as err:
                raise ConfigError(f"Stage {name} of {cfg_path}: {err}") from None
    cfg.cfg_path = cfg_path
    cfg.overrides = list(overrides)
    cfg.task = cfg.get("task") or os.path.basename(os.path.dirname(os.path.abspath(cfg_path)))
    cfg.exp = cfg.get("exp") or os.path.splitext(os.path.basename(cfg_path))[0]
    return cfg


def optional_path(cfg: Mapping[str, Any], key: str = "pretrained_path") -> Optional[str]:
    """The path in ``cfg[key]``, or None when it is unset or spelled null/none/empty on the command line.

    Args:
        cfg: the run config.
        key: the top-level key holding the optional path.
    """
    path = cfg.get(key)
    return None if path is None or str(path).strip().lower() in UNSET else str(path)
