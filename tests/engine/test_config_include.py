"""``_include``: YAML fragments merged under the mapping that names them, and the shipped configs that use them."""
from pathlib import Path

import pytest

from plugin.engine import load_config
from plugin.engine.config import resolve_includes
from plugin.errors import ConfigError

CFGS = Path(__file__).resolve().parents[2] / "cfgs"
EXPERIMENTS = sorted(p for p in CFGS.rglob("*.yaml") if p.name != "default.yaml" and "_blocks" not in p.parts)
GDPA_EXPERIMENTS = ["modelnet40/clip2point-gdpa-fewshot.yaml", "modelnet40/clip2point-gdpa-finetune.yaml",
                    "scanobjectnn/clip2point-gdpa-fewshot.yaml"]
ZEROSHOT_EXPERIMENTS = ["modelnet40/clip2point-zeroshot.yaml", "modelnet10/clip2point-zeroshot.yaml",
                        "scanobjectnn/clip2point-zeroshot.yaml"]


def _tree(tmp_path: Path, files: dict) -> Path:
    """A cfgs/ folder under ``tmp_path`` with the real root default and ``files`` (relative path -> text)."""
    root = tmp_path / "cfgs"
    for name, text in {"default.yaml": (CFGS / "default.yaml").read_text(), **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _has_include(node) -> bool:
    return isinstance(node, dict) and ("_include" in node or any(_has_include(v) for v in node.values()))


def test_include_precedence_nesting_and_deep_merge(tmp_path):
    root = _tree(tmp_path, {
        "_blocks/base.yaml": "epochs: 7\nlr: 0.01\nbatch_size: 4\noptimizer: {NAME: sgd, weight_decay: 0.5}\n"
                             "svm: {folds: 3}\n",
        "_blocks/recipe.yaml": "_include: base.yaml\nlr: 0.02\n",         # nested include; its own keys win
        "_blocks/late.yaml": "batch_size: 8\n",                              # a later fragment wins
        "task/exp.yaml": "_include: [../_blocks/recipe.yaml, ../_blocks/late.yaml]\nepochs: 9\n"
                         "optimizer: {weight_decay: 0.1}\n"})
    cfg = load_config(str(root / "task" / "exp.yaml"))
    assert (cfg.epochs, cfg.lr, cfg.batch_size) == (9, 0.02, 8)
    assert cfg.optimizer == {"NAME": "sgd", "weight_decay": 0.1}           # merged key by key
    assert cfg.svm.folds == 3 and cfg.svm.pooling == "max"                 # the fragment over cfgs/default.yaml
    assert "_include" not in cfg and cfg.task == "task"


def test_include_in_a_stage_block_and_in_a_default(tmp_path):
    root = _tree(tmp_path, {
        "_blocks/short.yaml": "epochs: 2\nsvm: {folds: 2}\n",
        "_blocks/task.yaml": "num_classes: 5\n",
        "task/default.yaml": "_include: ../_blocks/task.yaml\nval_batch_size: 16\n",
        "task/exp.yaml": "mode: stages\nstages: [svm]\nstage_cfgs:\n  svm:\n    _include: ../_blocks/short.yaml\n"
                         "    seed: 3\n"})
    workflow = load_config(str(root / "task" / "exp.yaml"))
    assert workflow.num_classes == 5 and workflow.val_batch_size == 16 and not _has_include(workflow.dict())
    stage = load_config(str(root / "task" / "exp.yaml"), ["mode=svm"])
    assert (stage.epochs, stage.svm.folds, stage.seed, stage.num_classes) == (2, 2, 3, 5)


@pytest.mark.parametrize("files, match", [
    ({"_blocks/a.yaml": "_include: b.yaml\n", "_blocks/b.yaml": "_include: a.yaml\n"},
     r"^\S*_blocks/a.yaml includes itself \(\S*_blocks/a.yaml -> \S*_blocks/b.yaml -> \S*_blocks/a.yaml\): "
     r"remove one of the _include entries of this cycle\.$"),
    ({"_blocks/a.yaml": "_include: a.yaml\n"}, r"^\S*_blocks/a.yaml includes itself .*: remove one"),
    ({}, r"^\S*exp.yaml includes '../_blocks/a.yaml', but \S*_blocks/a.yaml does not exist: fix that _include "
         r"entry \(paths are relative to the folder of the file that includes them\)\.$"),
    ({"_blocks/a.yaml": "- epochs\n- lr\n"},
     r"^\S*_blocks/a.yaml must hold a mapping of keys to values, not a list \(it is included by \S*exp.yaml\)\.$"),
    ({"_blocks/a.yaml": "epoch: 5\n"}, r"^Unknown config key 'epoch' in \S*_blocks/a.yaml \(did you mean epochs"),
])
def test_bad_includes_are_one_sentence_naming_the_file(tmp_path, files, match):
    root = _tree(tmp_path, {**files, "task/exp.yaml": "_include: ../_blocks/a.yaml\n"})
    with pytest.raises(ConfigError, match=match):
        load_config(str(root / "task" / "exp.yaml"))


def test_include_value_must_be_paths(tmp_path):
    root = _tree(tmp_path, {"task/exp.yaml": "_include: 3\n"})
    with pytest.raises(ConfigError, match=r"^_include in \S*exp.yaml is 3: set it to a path or a list of paths"):
        load_config(str(root / "task" / "exp.yaml"))


def test_wrong_nested_key_inside_a_fragment_is_reported(tmp_path):
    root = _tree(tmp_path, {"_blocks/model.yaml": "model: {NAME: GatedDualPathAdapter, variantt: gated}\n",
                            "task/exp.yaml": "_include: ../_blocks/model.yaml\n"})
    with pytest.raises(ConfigError, match=r"Unknown config key 'model.variantt' .*did you mean variant"):
        load_config(str(root / "task" / "exp.yaml"))


# ---- the shipped configs: each shared block is written once and loads as it did before it moved ------------------
GDPA_MODEL = {
    "NAME": "GatedDualPathAdapter", "variant": "gated", "num_views": 10, "feature_dim": None, "hidden_dim": None,
    "gate_init": 1.0, "logit_scale": None, "dropout": 0.0,
    "clip": {"name": "ViT-B-32", "pretrained": "weights/ViT-B-32.pt"},
    "render": {"views": "orthogonal_corner10", "dilation": 2, "reduction": "min", "encoding": "clip2point_release"},
    "templates": "clip2point", "text_cache": None}
GDPA_RECIPE = {"criterion_args": {"NAME": "CrossEntropy", "label_smoothing": 0.0}, "lr": 0.001,
               "optimizer": {"NAME": "adamw", "weight_decay": 0.0001}, "sched": "cosine", "min_lr": 1.0e-5,
               "warmup_epochs": 0, "t_max": None, "grad_norm_clip": None, "batch_size": 32, "val_batch_size": 32,
               "val_freq": 1}
ZEROSHOT = {"model": {"clip": {"name": "ViT-B-32", "pretrained": "weights/ViT-B-32.pt"},
                      "render": {"dilation": 2, "reduction": "min", "views": "orthogonal6",
                                 "encoding": "clip2point_release"}},
            "zeroshot": {"split": "test", "templates": "clip2point", "views": "orthogonal6", "text_cache": None,
                         "class_names": None},
            "val_batch_size": 32}


@pytest.mark.parametrize("cfg_file, mode, epochs", [(f, None, 50 if "finetune" in f else 100) for f in GDPA_EXPERIMENTS]
                         + [("modelnet40/clip2point.yaml", "fewshot", 100)])
def test_gdpa_configs_share_the_fragment(cfg_file, mode, epochs):
    cfg = load_config(str(CFGS / cfg_file), [f"mode={mode}"] if mode else []).dict()
    assert cfg["model"] == GDPA_MODEL == resolve_includes(str(CFGS / "_blocks" / "clip2point_gdpa.yaml"))["model"]
    assert {key: cfg[key] for key in GDPA_RECIPE} == GDPA_RECIPE and cfg["epochs"] == epochs
    assert cfg["datatransforms"]["test"] == ["PointsToTensor", "PointCloudCenterAndNormalize"]


@pytest.mark.parametrize("cfg_file, mode", [(f, None) for f in ZEROSHOT_EXPERIMENTS]
                         + [("modelnet40/clip2point.yaml", "zeroshot")])
def test_zeroshot_configs_share_the_fragment(cfg_file, mode):
    cfg = load_config(str(CFGS / cfg_file), [f"mode={mode}"] if mode else []).dict()
    assert {key: cfg[key] for key in ZEROSHOT} == ZEROSHOT and cfg["mode"] == "zeroshot"
    assert cfg["datatransforms"]["test"] == ["PointsToTensor", "PointCloudCenterAndNormalize"]


def test_modelnet10_defaults_are_modelnet40s_with_its_subset():
    mn40, mn10 = (resolve_includes(str(CFGS / task / "default.yaml")) for task in ("modelnet40", "modelnet10"))
    assert mn10.pop("num_classes") == 10 and mn10["dataset"]["common"].pop("subset") == "modelnet10"
    assert mn40.pop("num_classes") == 40 and mn10 == mn40
    cfg = load_config(str(CFGS / "modelnet10" / "clip2point-zeroshot.yaml"))
    assert cfg.task == "modelnet10" and cfg.num_classes == 10 and cfg.epochs == 10 and cfg.lr == 0.001


@pytest.mark.parametrize("cfg_file", [str(p.relative_to(CFGS)) for p in EXPERIMENTS])
def test_no_include_key_reaches_a_shipped_config(cfg_file):
    cfg = load_config(str(CFGS / cfg_file))
    assert not _has_include(cfg.dict()) and cfg.task != "_blocks"
