"""Issue 9 §5: keys inside YAML blocks are checked against the class each block configures (strict_keys)."""
import logging
import shutil
from pathlib import Path

import pytest
from openpoints.models import build_model_from_cfg

from plugin.engine import load_config
from plugin.engine.config_keys import accepted_keywords, find_unknown_keys
from plugin.errors import ConfigError

CFGS = Path(__file__).resolve().parents[2] / "cfgs"
SHIPPED = sorted(str(p.relative_to(CFGS)) for p in CFGS.rglob("*.yaml") if p.name != "default.yaml")
POINTNEXT = """model:
  NAME: BaseCls
  encoder_args:
    NAME: PointNextEncoder
    blocks: [1, 1, 1, 1, 1, 1]
    strides: [1, 2, 2, 2, 2, 1]
    {width}: 64
    in_channels: 3
    sa_layers: 2
    sa_use_res: True
    radius: 0.15
    radius_scaling: 1.5
    nsample: 32
    expansion: 4
    aggr_args: {{feature_type: 'dp_fj', reduction: 'max'}}
    group_args: {{NAME: 'ballquery', normalize_dp: True}}
    conv_args: {{order: conv-norm-act}}
    act_args: {{act: 'relu'}}
    norm_args: {{norm: 'bn'}}
  cls_args: {{NAME: ClsHead, num_classes: 40, mlps: [512, 256], norm_args: {{norm: 'bn1d'}}}}
optimizer:
  NAME: adamw
  {weight_decay}: 0.05
"""


def _experiment(tmp_path: Path, width: str = "width", weight_decay: str = "weight_decay") -> str:
    """An experiment file beside copies of the shipped ModelNet40 defaults, with the given key spellings."""
    folder = tmp_path / "cfgs" / "modelnet40"
    folder.mkdir(parents=True)
    shutil.copy(CFGS / "default.yaml", tmp_path / "cfgs" / "default.yaml")
    shutil.copy(CFGS / "modelnet40" / "default.yaml", folder / "default.yaml")
    path = folder / "typo.yaml"
    path.write_text(POINTNEXT.format(width=width, weight_decay=weight_decay))
    return str(path)


@pytest.mark.parametrize("typo, path, valid", [
    (dict(width="widht"), "model.encoder_args.widht", "did you mean width?"),
    (dict(weight_decay="weight_decya"), "optimizer.weight_decya", "did you mean weight_decay?"),
])
def test_a_typo_inside_a_yaml_block_is_one_sentence_exit_2(tmp_path, main, capsys, typo, path, valid):
    root = tmp_path / "log"
    assert main(["--cfg", _experiment(tmp_path, **typo), f"root_dir={root}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: Unknown config key '{path}' for ") and "\n" not in err
    assert valid in err and "use one of " in err and "strict_keys=False" in err
    assert not root.exists()                                       # refused before any run folder


def test_the_typo_no_longer_builds_another_model_silently(tmp_path, caplog):
    cfg = load_config(_experiment(tmp_path))
    assert cfg.model.encoder_args.width == 64                       # the spelled-right file loads
    with caplog.at_level(logging.WARNING, logger="plugin"):
        loose = load_config(_experiment(tmp_path / "b", width="widht"), ["strict_keys=False"])
        load_config(_experiment(tmp_path / "c", width="widht"), ["strict_keys=False"])
    warnings = [r.getMessage() for r in caplog.records if "model.encoder_args.widht" in r.getMessage()]
    assert len(warnings) == 1 and "is ignored (did you mean width?)" in warnings[0]   # shown once
    assert "widht" not in loose.model.encoder_args                 # dropped, so OpenPoints does not warn again
    assert build_model_from_cfg(loose.model).encoder.out_channels == 512   # the default width 32, x 2^4


@pytest.mark.parametrize("cfg_file", SHIPPED)
def test_every_shipped_config_passes_strict_keys(cfg_file):
    cfg = load_config(str(CFGS / cfg_file))                          # stages files load every stage too
    assert cfg.strict_keys is True and find_unknown_keys(cfg) == []


@pytest.mark.parametrize("override, path", [
    ("+model.cls_args.mlp=[8]", "model.cls_args.mlp"),
    ("+model.encoder_args.group_args.normalize_xyz=True", "model.encoder_args.group_args.normalize_xyz"),
    ("+criterion_args.label_smothing=0.1", "criterion_args.label_smothing"),
    ("+dataset.common.num_point=8", "dataset.common.num_point"),
    ("+dataset.train.use_normal=True", "dataset.train.use_normal"),
    ("+dataset.tarin.split=train", "dataset.tarin"),
    ("+optimizer.lr=0.1", "optimizer.lr"),
    ("+model.criterion_args={'NAME': 'SmoothCrossEntropy', 'label_smothing': 0.1}",
     "model.criterion_args.label_smothing"),
])
def test_every_block_is_checked(override, path):
    with pytest.raises(ConfigError, match=f"^Unknown config key '{path}' for "):
        load_config(str(CFGS / "modelnet40" / "pointnext-s.yaml"), [override])


@pytest.mark.parametrize("cfg_file, override, path", [
    ("shapenet/pic_at_point-dgcnn.yaml", "+model.loss_args.use_locl=True", "model.loss_args.use_locl"),
    ("shapenet/pic_at_point-dgcnn.yaml", "+model.image_backbone.weight=none", "model.image_backbone.weight"),
    ("shapenet/clip2point.yaml", "+model.render.dilaton=1", "model.render.dilaton"),
    ("shapenet/clip2point.yaml", "+dataset.common.image_mean=[0.5]", "dataset.common.image_mean"),
    ("modelnet40/clip2point-gdpa-fewshot.yaml", "+model.templats=clip2point", "model.templats"),
    ("s3dis/pointnext-s.yaml", "+model.decoder_args.decoder_layer=2", "model.decoder_args.decoder_layer"),
])
def test_project_models_and_sub_blocks_are_checked(cfg_file, override, path):
    with pytest.raises(ConfigError, match=f"^Unknown config key '{path}' for "):
        load_config(str(CFGS / cfg_file), [override])


def test_optimizer_keys_follow_the_chosen_class():
    cfg = str(CFGS / "modelnet40" / "dgcnn.yaml")
    load_config(cfg, ["optimizer.NAME=sgd", "+optimizer.momentum=0.8"])                  # SGD takes momentum
    load_config(cfg, ["optimizer.NAME=lookahead_adam", "+optimizer.betas=[0.9,0.99]"])   # prefix: the class after '_'
    with pytest.raises(ConfigError, match="^Unknown config key 'optimizer.momentum' for optimizer adam"):
        load_config(cfg, ["optimizer.NAME=adam", "+optimizer.momentum=0.8"])
    with pytest.raises(ConfigError, match="^Unknown config key 'optimizer.nesterov'"):    # the factory sets it
        load_config(cfg, ["optimizer.NAME=sgd", "+optimizer.nesterov=True"])
    with pytest.raises(ConfigError, match="^Unknown optimizer.NAME 'adamm': set it to one of .*adamw"):
        load_config(cfg, ["optimizer.NAME=adamm"])                                       # was a bare AssertionError


def test_a_workflow_checks_every_stage_before_the_first_starts():
    cfg = str(CFGS / "scanobjectnn" / "pic_at_point.yaml")
    with pytest.raises(ConfigError, match=r"^Stage finetune of .*: Unknown config key 'model.cls_args.mlp' for "
                                          r"ClsHead \(did you mean mlps\?\)"):
        load_config(cfg, ["+stage_cfgs.finetune.model.cls_args.mlp=[8]"])
    finetune = load_config(cfg, ["mode=finetune", "model.embed_dim=32"])
    assert set(finetune.model) == {"NAME", "encoder_args", "cls_args"}   # Pic@Point's keys stay with its stage
    assert load_config(cfg, ["mode=pretrain", "model.embed_dim=32"]).model.embed_dim == 32


def test_strict_keys_must_be_a_bool():
    with pytest.raises(ConfigError, match="^strict_keys is 'no' but must be True or False"):
        load_config(str(CFGS / "modelnet40" / "dgcnn.yaml"), ["strict_keys='no'"])


class _Base:
    def __init__(self, a: int = 1, **kwargs):
        self.a, self.b = a, kwargs.get("b")


class _Forwards(_Base):
    def __init__(self, c: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.c, self.d = c, kwargs.pop("d", None)


class _Opaque:
    def __init__(self, **kwargs):
        self.inner = dict(**kwargs)


def test_accepted_keywords_follow_kwargs():
    assert accepted_keywords(_Base) == {"a", "b"}                    # named + kwargs.get
    assert accepted_keywords(_Forwards) == {"a", "b", "c", "d"}      # + super().__init__(**kwargs)
    assert accepted_keywords(_Opaque) is None                        # forwarded elsewhere: unknowable, not checked
