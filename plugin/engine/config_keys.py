"""Nested config keys: every key of a block must be one the class its block configures takes.

Inside the blocks that configure a registered class (``model`` and every ``*_args`` block naming a class
with ``NAME``, ``criterion_args``, ``optimizer``, ``dataset.common`` and the split blocks) each key must be
a keyword that class takes (:func:`accepted_keywords`). OpenPoints' classes swallow unknown keywords
(``**kwargs``) with at most a log line, so a typo such as ``widht`` would silently build another model.
With ``strict_keys: true`` (the default) such a key is a :class:`~plugin.errors.ConfigError` naming its
full path and the valid keys; with ``strict_keys: false`` it is warned about once and dropped.
"""
import ast
import difflib
import functools
import inspect
import logging
import textwrap
import warnings
from typing import Any, Dict, FrozenSet, Iterable, List, NamedTuple, Optional, Set, Tuple

from openpoints.utils import EasyConfig

from ..errors import ConfigError

LOGGER = logging.getLogger("plugin")


# keys that moved into a mode's block: old top-level key -> (block, key)
RENAMED = {"pretrain_select": ("pretrain", "select"), "pretrain_holdout": ("pretrain", "holdout"),
           "adapter_select": ("adapter", "select"), "adapter_holdout": ("adapter", "holdout")}


def upgrade_renamed_keys(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """A stored run config (a checkpoint's, of an older run) with the :data:`RENAMED` keys moved into their blocks.

    Args:
        cfg: the plain config dict; it is not modified.
    """
    upgraded = {key: value for key, value in cfg.items() if key not in RENAMED}
    for old, (block, key) in RENAMED.items():
        if old in cfg:
            upgraded[block] = {**(upgraded.get(block) or {}), key: cfg[old]}
    return upgraded


def unknown_key_message(key: str, valid: Iterable[str], where: str) -> str:
    """One sentence naming the wrong key, the closest valid keys and all valid ones (or where a renamed key went)."""
    if key in RENAMED:
        block, new = RENAMED[key]
        return (f"Config key '{key}' in {where} is now '{block}.{new}': write {block}.{new}=VALUE on the command line, "
                f"or '{new}' inside a '{block}:' block in the YAML.")
    valid = sorted(valid)
    close = difflib.get_close_matches(key.split(".")[-1], valid, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    choices = f"use one of {', '.join(valid)}" if valid else f"'{key.rsplit('.', 1)[0]}' takes no sub-keys here"
    return (f"Unknown config key '{key}' in {where}{hint}: {choices}, "
            f"or write +{key}=VALUE on the command line to add a new key on purpose.")


DATASET_BLOCKS = ("common", "train", "val", "test")  # what OpenPoints' dataloader builder reads from `dataset`
# a mode's block whose keys are checked like a class's (a typo inside it in a YAML file would be ignored): block -> keys
MODE_BLOCKS = {"retrieval": ("split", "gallery", "batch_size", "seed", "object_key"),
               "selftrain": ("select", "base_lr", "lr_batch", "shots")}
_WARNED: Set[str] = set()  # unknown key paths already warned about (strict_keys: false), so each shows once


def _init_owner(cls: type) -> type:
    """The class in ``cls``'s MRO whose own ``__init__`` constructing ``cls`` runs."""
    return next((c for c in cls.__mro__ if "__init__" in vars(c)), object)


@functools.lru_cache(maxsize=None)
def accepted_keywords(cls: type) -> Optional[FrozenSet[str]]:
    """The keyword arguments that constructing ``cls`` reads, or None when that cannot be known.

    Named parameters count. Behind ``**kwargs`` the constructor is followed: the names it reads
    (``kwargs.get('x')``, ``kwargs.pop('x')``, ``kwargs['x']``) count, and where it passes ``**kwargs``
    on to ``super().__init__`` the keywords of the parent class count too. A constructor that passes
    ``**kwargs`` anywhere else, or whose source is not available, accepts what cannot be known: None.

    Args:
        cls: a registered class (model, loss, dataset, optimizer, grouper).
    """
    owner = _init_owner(cls)
    if owner is object:
        return frozenset()
    try:
        params = list(inspect.signature(owner.__init__).parameters.values())[1:]
    except (TypeError, ValueError):  # a constructor implemented in C
        return None
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    var_kw = next((p.name for p in params if p.kind is p.VAR_KEYWORD), None)
    if var_kw is None:
        return frozenset(named)
    try:
        with warnings.catch_warnings():  # third-party sources may hold invalid escapes in docstrings
            warnings.simplefilter("ignore")
            tree = ast.parse(textwrap.dedent(inspect.getsource(owner.__init__)))
    except (OSError, TypeError, SyntaxError):
        return None

    def is_kwargs(node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and node.id == var_kw

    def literal(node: ast.AST) -> Optional[str]:
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and is_kwargs(node.func.value) \
                and node.func.attr in ("get", "pop", "setdefault") and node.args and literal(node.args[0]):
            named.add(literal(node.args[0]))
        elif isinstance(node, ast.Subscript) and is_kwargs(node.value) and literal(node.slice):
            named.add(literal(node.slice))
        elif isinstance(node, ast.Call) and any(k.arg is None and is_kwargs(k.value) for k in node.keywords):
            if not (isinstance(node.func, ast.Attribute) and node.func.attr == "__init__"):
                return None  # forwarded to a callee that cannot be followed from here
            after = cls.__mro__[cls.__mro__.index(owner) + 1:]  # super().__init__ / Base.__init__: the parent's
            inherited = accepted_keywords(after[0]) if after else frozenset()
            if inherited is None:
                return None
            named |= inherited
    return frozenset(named)


class UnknownKey(NamedTuple):
    """A key of a config block that the class the block configures does not take."""

    block: Dict[str, Any]   # the block holding the key
    path: str               # the block's dotted path, e.g. model.encoder_args
    key: str
    valid: FrozenSet[str]   # the keys the class takes
    owner: str              # the class, for the message

    def message(self, strict: bool) -> str:
        """One sentence naming the full key path, the closest valid keys and all valid ones.

        Args:
            strict: the error of ``strict_keys: true``; False: the warning that the key is ignored.
        """
        full = f"{self.path}.{self.key}"
        close = difflib.get_close_matches(self.key, sorted(self.valid), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        if self.path == "optimizer" and self.key == "lr":
            hint = " (the learning rate is the top-level key lr)"
        choices = f"use one of {', '.join(sorted(self.valid))}"
        if strict:
            return (f"Unknown config key '{full}' for {self.owner}{hint}: {choices}, or set strict_keys=False to "
                    f"only warn about keys a class does not take.")
        return f"Config key '{full}' is not taken by {self.owner} and is ignored{hint}: {choices}."


def _unknown(block: Dict[str, Any], path: str, valid: Optional[Iterable[str]], owner: str) -> List[UnknownKey]:
    """The keys of ``block`` not in ``valid`` (none when ``valid`` is None: unknowable)."""
    if valid is None:
        return []
    valid = frozenset(valid)
    return [UnknownKey(block, path, key, valid, owner) for key in block if key not in valid]


def _sub_block_classes() -> Dict[str, Dict[str, Tuple[type, Tuple[str, ...]]]]:
    """Blocks that a class passes on to a fixed class: class name -> {key: (class, keys it reads besides)}."""
    from ..losses import PointPictureInfoNCE
    from ..models.backbones.image_backbones import FrozenImageBackbone
    from ..render.depth_renderer import DepthRenderer

    return {"PicAtPoint": {"loss_args": (PointPictureInfoNCE, ("NAME",)),  # PicAtPoint drops a NAME there
                           "image_backbone": (FrozenImageBackbone, ())},
            "CLIP2Point": {"render": (DepthRenderer, ())}}


def _runner_model_keys() -> Dict[str, Tuple[str, ...]]:
    """Keys of ``model`` that a runner reads next to the model class's own: class name -> keys."""
    from ..models.heads.gdpa import ADAPTER_NAME, RUNNER_MODEL_KEYS

    return {ADAPTER_NAME: tuple(RUNNER_MODEL_KEYS)}


def _grouper_classes() -> Dict[str, type]:
    """OpenPoints' ``create_grouper``: ``group_args.NAME`` -> the grouper class it builds."""
    from openpoints.models.layers.group import KNNGroup, QueryAndGroup

    return {"ballquery": QueryAndGroup, "knn": KNNGroup}


def _named_class(key: str, block: Dict[str, Any]) -> Tuple[Optional[type], Tuple[str, ...]]:
    """The class an ``*_args`` block names with ``NAME`` and the keys its builder reads besides the class's own."""
    from openpoints.loss.build import LOSS
    from openpoints.models.build import MODELS

    name = block.get("NAME")
    if not isinstance(name, str):
        return None, ()
    if key == "group_args":  # create_grouper pops NAME, radius and nsample, the encoder sets the last two
        return _grouper_classes().get(name), ("NAME", "radius", "nsample")
    return (LOSS if key == "criterion_args" else MODELS).get(name), ("NAME",)


def _walk(block: Dict[str, Any], path: str, cls: Optional[type], extra: Iterable[str] = ()) -> List[UnknownKey]:
    """Unknown keys of ``block`` and of its sub-blocks that name a class (``*_args`` with ``NAME``) or pass to one.

    Args:
        block: a config block, e.g. ``model``.
        path: its dotted path, for the messages.
        cls: the class it configures; None: its own keys are not checked, its sub-blocks are.
        extra: keys its builder reads besides the class's keywords (``NAME``, runner keys).
    """
    found = _unknown(block, path, None if cls is None or accepted_keywords(cls) is None
                     else accepted_keywords(cls) | set(extra), cls.__name__ if cls else "")
    fixed = _sub_block_classes().get(cls.__name__, {}) if cls is not None else {}
    for key, value in block.items():
        if not isinstance(value, dict):
            continue
        if key in fixed:
            found += _walk(value, f"{path}.{key}", *fixed[key])
        elif key.endswith("_args"):
            sub, sub_extra = _named_class(key, value)
            if sub is not None:
                found += _walk(value, f"{path}.{key}", sub, sub_extra)
    return found


def _optimizer_classes() -> Dict[str, Tuple[type, Tuple[str, ...]]]:
    """``openpoints.optim.build_optimizer_from_cfg``'s if-chain (apex's fused optimizers aside) as a table.

    The factory picks the class by the part of ``optimizer.NAME`` after its last ``_``, lower-cased
    (``lookahead_adam``: ``adam``), and passes some keywords itself: name -> (class, keywords it sets or drops).
    """
    import openpoints.optim as op
    from torch import optim

    sgd = ("momentum", "nesterov", "eps")
    return {"sgd": (optim.SGD, sgd), "nesterov": (optim.SGD, sgd), "momentum": (optim.SGD, sgd),
            "sgdp": (op.SGDP, ("momentum", "nesterov")), "adam": (optim.Adam, ()), "adamw": (optim.AdamW, ()),
            "adamp": (op.AdamP, ("wd_ratio", "nesterov")), "nadam": (op.Nadam, ()), "radam": (op.RAdam, ()),
            "adamax": (optim.Adamax, ()), "adabelief": (op.AdaBelief, ("rectify",)),
            "radabelief": (op.AdaBelief, ("rectify",)), "adadelta": (optim.Adadelta, ()),
            "adagrad": (optim.Adagrad, ()), "adafactor": (op.Adafactor, ()), "lamb": (op.Lamb, ()),
            "lambc": (op.Lamb, ("trust_clip",)), "larc": (op.Lars, ("momentum", "trust_clip")),
            "lars": (op.Lars, ("momentum",)), "nlarc": (op.Lars, ("momentum", "trust_clip", "nesterov")),
            "nlars": (op.Lars, ("momentum", "nesterov")), "madgrad": (op.MADGRAD, ("momentum",)),
            "madgradw": (op.MADGRAD, ("momentum", "decoupled_decay")), "novograd": (op.NvNovoGrad, ()),
            "nvnovograd": (op.NvNovoGrad, ()), "rmsprop": (optim.RMSprop, ("alpha", "momentum")),
            "rmsproptf": (op.RMSpropTF, ("alpha", "momentum")), "adahessian": (op.Adahessian, ())}


def _check_optimizer(block: Dict[str, Any]) -> List[UnknownKey]:
    """Unknown keys of ``optimizer``; an unknown ``optimizer.NAME`` is an error whatever ``strict_keys`` says.

    Valid: ``build_optimizer_from_cfg``'s own keywords (``lr`` aside: it is the top-level key), ``momentum``
    where the factory passes it on, and the chosen class's keywords that the factory does not set itself.

    Args:
        block: the ``optimizer`` block.
    """
    from openpoints.optim import build_optimizer_from_cfg

    classes = _optimizer_classes()
    name = str(block.get("NAME", "sgd"))
    if name.lower().split("_")[-1] not in classes:
        raise ConfigError(f"Unknown optimizer.NAME '{name}': set it to one of {', '.join(sorted(classes))}.")
    cls, fixed = classes[name.lower().split("_")[-1]]
    factory = [p.name for p in inspect.signature(build_optimizer_from_cfg).parameters.values()
               if p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in ("model", "lr", "momentum")]
    own = accepted_keywords(cls)
    valid = None if own is None else {*factory, *({"momentum"} & set(fixed)), *(own - {"params", "lr", *fixed})}
    return _unknown(block, "optimizer", valid, f"optimizer {name}")


def _check_dataset(dataset: Dict[str, Any]) -> List[UnknownKey]:
    """Unknown keys of ``dataset`` itself, of ``dataset.common`` and of the split blocks (their class: common's NAME).

    Args:
        dataset: the ``dataset`` block; OpenPoints builds the dataset from ``common`` plus the split's block.
    """
    from openpoints.dataset.build import DATASETS

    found = _unknown(dataset, "dataset", DATASET_BLOCKS, "the dataset config")
    common = dataset.get("common")
    cls = DATASETS.get(common.get("NAME")) if isinstance(common, dict) else None
    own = accepted_keywords(cls) if cls is not None else None
    if own is None:
        return found
    for split in DATASET_BLOCKS:
        if isinstance(dataset.get(split), dict):
            found += _unknown(dataset[split], f"dataset.{split}", own | ({"NAME"} if split == "common" else set()),
                              cls.__name__)
    return found


def find_unknown_keys(cfg: Dict[str, Any]) -> List[UnknownKey]:
    """Every key inside ``model``, the top-level ``*_args`` blocks, ``optimizer`` and ``dataset`` that the class
    its block configures does not take (see the module docstring), and inside the :data:`MODE_BLOCKS` that their
    mode does not read.

    Args:
        cfg: a loaded config.

    Raises:
        ConfigError: an unknown ``optimizer.NAME`` (OpenPoints would fail with a bare assertion).
    """
    from openpoints.models.build import MODELS

    found: List[UnknownKey] = []
    model = cfg.get("model")
    if isinstance(model, dict):
        cls = MODELS.get(model["NAME"]) if isinstance(model.get("NAME"), str) else None
        found += _walk(model, "model", cls, ("NAME", *_runner_model_keys().get(cls.__name__, ())) if cls else ())
    for key, value in cfg.items():
        if key.endswith("_args") and isinstance(value, dict):
            sub, extra = _named_class(key, value)
            found += _walk(value, key, sub, extra)
    if isinstance(cfg.get("optimizer"), dict):
        found += _check_optimizer(cfg.optimizer)
    if isinstance(cfg.get("dataset"), dict):
        found += _check_dataset(cfg.dataset)
    for block, keys in MODE_BLOCKS.items():
        if isinstance(cfg.get(block), dict):
            found += _unknown(cfg[block], block, keys, f"mode={block}")
    return found


def validate_keys(cfg: EasyConfig) -> None:
    """Refuse (``strict_keys: true``) or warn about once and drop (``false``) the keys :func:`find_unknown_keys` finds.

    Args:
        cfg: a loaded config; with ``strict_keys: false`` its unknown nested keys are removed in place.

    Raises:
        ConfigError: one sentence naming the first unknown key's full path and the valid keys.
    """
    strict = cfg.get("strict_keys", True)
    found = find_unknown_keys(cfg)
    if found and strict:
        more = f" ({len(found) - 1} more unknown key(s) follow)" if len(found) > 1 else ""
        raise ConfigError(found[0].message(strict=True).rstrip(".") + more + ".")
    for unknown in found:
        full = f"{unknown.path}.{unknown.key}"
        if full not in _WARNED:
            _WARNED.add(full)
            LOGGER.warning(unknown.message(strict=False))
        del unknown.block[unknown.key]


def keep_stage_model_keys(cfg: EasyConfig, stage: Dict[str, Any]) -> None:
    """In a stage whose block names ``model.NAME``, drop the shared ``model`` keys that class does not take.

    Args:
        cfg: the config with the stage block and the overrides applied; its ``model`` is changed in place.
        stage: the stage block (``{}`` outside a workflow).
    """
    from openpoints.models.build import MODELS

    stage_model = stage.get("model") or {}
    cls = MODELS.get(cfg.model.NAME) if "NAME" in stage_model and isinstance(cfg.model.get("NAME"), str) else None
    valid = accepted_keywords(cls) if cls is not None else None
    if valid is None:
        return
    valid = valid | {"NAME", *_runner_model_keys().get(cls.__name__, ())}
    for key in [k for k in cfg.model if k not in stage_model and k not in valid]:
        del cfg.model[key]
