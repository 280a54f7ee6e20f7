"""Config inheritance, overrides and key validation."""
from pathlib import Path

import pytest

from plugin.engine import load_config
from plugin.errors import ConfigError

CFGS = Path(__file__).resolve().parents[2] / "cfgs"


def test_recursive_default_inheritance():
    cfg = load_config(str(CFGS / "modelnet40" / "pointnext-s.yaml"))
    assert cfg.model.encoder_args.NAME == "PointNextEncoder"             # the experiment file
    assert cfg.dataset.common.NAME == "ModelNet40NormalResampled"         # cfgs/modelnet40/default.yaml
    assert cfg.mode == "train" and cfg.root_dir == "log"                  # cfgs/default.yaml
    assert cfg.epochs == 10                                                # task default overrides root
    assert (cfg.task, cfg.exp) == ("modelnet40", "pointnext-s")


def test_overrides_parse_literals_and_nest():
    cfg = load_config(str(CFGS / "modelnet40" / "dgcnn.yaml"),
                      ["epochs=3", "lr=1e-4", "model.encoder_args.k=16", "model.cls_args.mlps=[8,4]",
                       "+my.new_key=hello"])
    assert cfg.epochs == 3 and cfg.lr == 1e-4 and cfg.model.encoder_args.k == 16
    assert cfg.model.cls_args.mlps == [8, 4] and cfg.my.new_key == "hello"


@pytest.mark.parametrize("override, expected", [
    ("epoch=3", "Unknown config key 'epoch'"),
    ("model.encoder_args.chanels=3", "did you mean channels"),
    ("dataset.comon.data_dir=/x", "use one of common, test, train, val"),
    ("epochs", "has no '='"),
])
def test_wrong_override_lists_choices(override, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace("?", r"\?")):
        load_config(str(CFGS / "modelnet40" / "dgcnn.yaml"), [override])


def test_wrong_key_in_yaml_file(tmp_path):
    exp = tmp_path / "cfgs" / "task" / "exp.yaml"
    exp.parent.mkdir(parents=True)
    (tmp_path / "cfgs" / "default.yaml").write_text((CFGS / "default.yaml").read_text())
    exp.write_text("epoch: 5\n")
    with pytest.raises(ConfigError, match=r"Unknown config key 'epoch' in .*exp.yaml \(did you mean epochs"):
        load_config(str(exp))


def test_missing_config_file():
    with pytest.raises(ConfigError, match="does not exist: pass an existing YAML with --cfg"):
        load_config("cfgs/nope.yaml")
