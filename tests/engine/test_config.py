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


@pytest.mark.parametrize("override, message", [
    ("batch_size=0", "batch_size is 0 but must be an integer >= 1"),
    ("val_batch_size=-2", "val_batch_size is -2 but must be an integer >= 1"),
    ("epochs=0", "epochs is 0 but must be an integer >= 1"),
    ("epochs=-1", "epochs is -1 but must be an integer >= 1"),
    ("epochs=abc", "epochs is 'abc' but must be an integer >= 1"),
    ("epochs=2.5", "epochs is 2.5 but must be an integer >= 1"),
    ("val_freq=0", "val_freq is 0 but must be an integer >= 1"),
    ("lr=abc", "lr is 'abc' but must be a number > 0"),
    ("lr=0", "lr is 0 but must be a number > 0"),
    ("dataset.common.num_points=abc", "dataset.common.num_points is 'abc' but must be an integer >= 1 or null"),
    ("device=tpu", "device is 'tpu' but must be auto, cpu, cuda or cuda:N"),
    ("dataloader.num_workers=-1", "dataloader.num_workers is -1 but must be an integer >= 0"),
])
def test_values_are_checked_when_the_config_loads(override, message):
    with pytest.raises(ConfigError, match=f"^{message}.*: set {override.split('=')[0]} to"):
        load_config(str(CFGS / "modelnet40" / "dgcnn.yaml"), [override])


@pytest.mark.parametrize("override", ["device=cuda:1", "device=cpu", "lr=2e-3", "lr_image=null", "seed=null",
                                      "num_points=512", "grad_norm_clip=1"])
def test_valid_values_pass(override):
    load_config(str(CFGS / "modelnet40" / "dgcnn.yaml"), [override])


def test_bad_values_exit_2_before_any_run_folder(tmp_path, main, capsys):
    assert main(["--cfg", str(CFGS / "modelnet40" / "dgcnn.yaml"), "epochs=0", f"root_dir={tmp_path}"]) == 2
    assert "epochs is 0" in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_renamed_keys_name_their_new_place_and_old_run_configs_are_upgraded():
    from plugin.engine.config_keys import upgrade_renamed_keys
    from plugin.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'pretrain_select' in the command-line overrides is now 'pretrain.select'"):
        load_config(str(CFGS / "shapenet" / "clip2point.yaml"), ["pretrain_select=loss"])
    old = {"pretrain_select": "zeroshot", "pretrain_holdout": 0.25, "adapter_select": "holdout", "lr": 0.1}
    assert upgrade_renamed_keys(old) == {"pretrain": {"select": "zeroshot", "holdout": 0.25},
                                         "adapter": {"select": "holdout"}, "lr": 0.1}
    assert "pretrain_select" in old  # the stored config is left as it was
