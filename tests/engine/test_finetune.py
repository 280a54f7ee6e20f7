"""``mode=finetune`` and the encoder-weights contract: exact loading, strict keys, clear errors."""
import json
import re
import pytest
import torch
from openpoints.models import build_model_from_cfg

from plugin.engine import load_config
from plugin.engine.encoder_weights import load_encoder_state, load_into_encoder
from plugin.errors import BadCheckpointError, ConfigError, UserError, WeightsNotFoundError

from .conftest import DGCNN_CFG, tiny_overrides

RUN_FILES = {"cfg.yaml", "log.txt", "metrics.json", "ckpt_latest.pth", "ckpt_best.pth"}


@pytest.fixture(scope="module")
def tiny_cfg(tiny_modelnet):
    return load_config(DGCNN_CFG, tiny_overrides(tiny_modelnet, "log"))


@pytest.fixture(scope="module")
def pretrained(tiny_cfg, tmp_path_factory):
    """A fake pre-training checkpoint: a randomly initialised encoder of the tiny config, other seed, odd BN stats."""
    torch.manual_seed(123)
    encoder = build_model_from_cfg(tiny_cfg.model.encoder_args)
    for name, buffer in encoder.named_buffers():
        if buffer.is_floating_point():
            buffer.uniform_(0.5, 1.5)
        else:
            buffer.fill_(7)       # num_batches_tracked
    state = {k: v.clone() for k, v in encoder.state_dict().items()}
    path = tmp_path_factory.mktemp("pretrain") / "ckpt_best.pth"
    torch.save({"encoder": state, "encoder_args": tiny_cfg.model.encoder_args.dict(), "epoch": 9, "loss": 0.1}, path)
    return path, state


def finetune_args(data_dir, root, *extra):
    return ["--cfg", DGCNN_CFG, *tiny_overrides(data_dir, root, epochs=1), "mode=finetune", *extra]


def test_finetune_starts_from_the_pretrained_encoder_exactly(pretrained, tiny_modelnet, tmp_path, main,
                                                             encoder_at_first_step):
    path, state = pretrained
    at_start = encoder_at_first_step
    assert main(finetune_args(tiny_modelnet, tmp_path, f"pretrained_path={path}")) == 0
    assert at_start.keys() == state.keys()
    for key, value in state.items():
        assert at_start[key].dtype == value.dtype and torch.equal(at_start[key], value), key

    run = next((tmp_path / "modelnet40").glob("dgcnn-*"))
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["encoder_tensors_loaded"] == len(state) and metrics["pretrained_path"] == str(path)
    assert metrics["epochs"] == 1 and 0 <= metrics["test_oa"] <= 100
    log = (run / "log.txt").read_text()
    assert f"loaded {len(state)} encoder tensors from {path} (head.*" in log and "epoch 1/1" in log
    trained = torch.load(run / "ckpt_latest.pth", weights_only=True, map_location="cpu")["model"]
    assert any(not torch.equal(trained[f"encoder.{k}"], v) for k, v in state.items())  # then it trains


def test_missing_encoder_keys_name_the_checkpoint(pretrained, tiny_modelnet, tmp_path, main, capsys):
    _, state = pretrained
    dropped = sorted(state)[:2]
    partial = tmp_path / "partial.pth"
    torch.save({"encoder": {k: v for k, v in state.items() if k not in dropped}}, partial)
    assert main(finetune_args(tiny_modelnet, tmp_path, f"pretrained_path={partial}")) == 2
    err = capsys.readouterr().err.strip()
    assert f"Checkpoint '{partial}' lacks 2 of the encoder's {len(state)} tensors (first: {dropped[0]}, {dropped[1]})" \
        in err and "Traceback" not in err, err


def test_missing_file_and_missing_key(tiny_modelnet, tmp_path, main, capsys):
    assert main(finetune_args(tiny_modelnet, tmp_path, "pretrained_path=/no/pre.pth")) == 2
    assert "Checkpoint '/no/pre.pth' does not exist: set pretrained_path" in capsys.readouterr().err
    assert main(finetune_args(tiny_modelnet, tmp_path)) == 2
    assert "mode=finetune needs pretrained_path" in capsys.readouterr().err
    assert not (tmp_path / "modelnet40").exists()   # no empty run folder left behind
    with pytest.raises(WeightsNotFoundError, match="set pretrained_path"):
        load_encoder_state("/no/pre.pth", "pretrained_path")


def test_supervised_and_bare_checkpoints_give_the_same_encoder_state(pretrained, tmp_path):
    path, state = pretrained
    supervised, bare = tmp_path / "supervised.pth", tmp_path / "bare.pth"
    torch.save({"model": {**{f"encoder.{k}": v for k, v in state.items()}, "prediction.0.weight": torch.ones(2)},
                "epoch": 3}, supervised)
    torch.save({f"module.{k}": v for k, v in state.items()}, bare)   # DataParallel prefix
    for source in (path, supervised, bare):
        loaded = load_encoder_state(str(source), "pretrained_path")
        assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state), source


def test_unexpected_keys_are_reported_not_fatal(pretrained, tiny_cfg):
    path, state = pretrained
    encoder = build_model_from_cfg(tiny_cfg.model.encoder_args)
    report = load_into_encoder(encoder, {**state, "projector.weight": torch.zeros(3)}, str(path))
    assert report.count == len(state) and sorted(report.loaded) == sorted(state)
    assert report.unexpected == ["projector.weight"] and "ignored 1 unexpected (first: projector.weight)" \
        in report.summary()


@pytest.mark.parametrize("content, message", [
    ({"model": {"prediction.0.weight": torch.ones(1)}}, "holds no encoder tensors (top-level keys: model)"),
    ({"epoch": 3}, "holds no encoder tensors"),
    ([1, 2], "holds a list, not a checkpoint dict"),
])
def test_checkpoints_without_an_encoder(content, message, tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save(content, path)
    with pytest.raises(UserError, match=re.escape(message)):
        load_encoder_state(str(path), "pretrained_path")


def test_unreadable_and_mismatched_checkpoints(pretrained, tiny_cfg, tmp_path):
    path, state = pretrained
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(BadCheckpointError, match="not a readable torch checkpoint .*set pretrained_path"):
        load_encoder_state(str(tmp_path / "junk.pth"), "pretrained_path")
    key = next(k for k, v in state.items() if v.dim() > 1)
    encoder = build_model_from_cfg(tiny_cfg.model.encoder_args)
    with pytest.raises(ConfigError, match=f"has encoder tensor {key} of shape \\(1, 1\\)"):
        load_into_encoder(encoder, {**state, key: torch.zeros(1, 1)}, str(path))


def test_killed_finetune_resumes_as_finetune(tiny_modelnet, tmp_path, main):
    """``mode=resume`` continues a fine-tuning run from ckpt_latest.pth, keeping its mode and figures."""

    pretrain = tmp_path / "pretrain.pth"
    args = ["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, tmp_path / "a", epochs=1)]
    assert main(args) == 0
    source = next((tmp_path / "a" / "modelnet40").glob("dgcnn-*")) / "ckpt_best.pth"
    torch.save({"model": torch.load(source, weights_only=True)["model"]}, pretrain)
    args = ["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, tmp_path / "b", epochs=1), "mode=finetune",
            f"pretrained_path={pretrain}"]
    assert main(args) == 0
    run = next((tmp_path / "b" / "modelnet40").glob("dgcnn-*"))
    assert main(["--cfg", DGCNN_CFG, "mode=resume", "epochs=2", f"run_dir={run}"]) == 0  # the run's own config
    state = torch.load(run / "ckpt_latest.pth", weights_only=True)
    metrics = json.loads((run / "metrics.json").read_text())
    assert state["epoch"] == 2 and state["mode"] == "finetune"
    assert metrics["encoder_tensors_loaded"] == "restored from ckpt_latest.pth"
