"""The runner end to end on a tiny dataset: run folder, resume, reproducibility, test, extract, errors."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from plugin.engine import RUNNERS
from plugin.io import atomic_files

from .conftest import DGCNN_CFG, tiny_overrides

MODES = ", ".join(sorted(RUNNERS.module_dict))
RUN_FILES = {"cfg.yaml", "log.txt", "metrics.json", "ckpt_latest.pth", "ckpt_best.pth"}


def only_run(root: Path) -> Path:
    runs = list((root / "modelnet40").glob("dgcnn-*"))
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def trained(tiny_modelnet, tmp_path_factory, main):
    """One finished 3-epoch training run."""
    root = tmp_path_factory.mktemp("log")
    assert main(["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, root, epochs=3)]) == 0
    return only_run(root)


def test_train_writes_complete_run_folder(trained):
    assert RUN_FILES <= {p.name for p in trained.iterdir()}
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and 1 <= metrics["best_epoch"] <= 3
    assert 0.0 <= metrics["test_oa"] <= 100.0 and 0.0 <= metrics["test_macc"] <= 100.0
    losses = [float(v) for v in re.findall(r"epoch \d/3 loss ([0-9.]+)", (trained / "log.txt").read_text())]
    assert len(losses) == 3 and losses[-1] < losses[0], losses  # it learns (accuracy: tests/test_realdata.py)
    assert torch.load(trained / "ckpt_latest.pth", weights_only=True)["epoch"] == 3
    assert not list(trained.glob(".*.tmp")), "a temporary checkpoint file was left behind"
    assert "epoch 3/3" in (trained / "log.txt").read_text()


def test_resume_continues_the_epoch_count(tiny_modelnet, tmp_path, main):
    args = ["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, tmp_path, epochs=1)]
    assert main(args) == 0
    run = only_run(tmp_path)
    # a bare resume: the newest run of task/exp under root_dir, with the config it was started with
    assert main(["--cfg", DGCNN_CFG, f"root_dir={tmp_path}", "mode=resume", "epochs=2"]) == 0
    assert only_run(tmp_path) == run                       # same folder
    state = torch.load(run / "ckpt_latest.pth", weights_only=True)
    assert state["epoch"] == 2
    log = (run / "log.txt").read_text()
    assert "resumed after epoch 1" in log and "epoch 2/2" in log and log.count("epoch 1/2") == 0


def test_same_seed_same_run_on_cpu(tiny_modelnet, tmp_path, main):
    states = []
    for name in ("a", "b"):
        # device=cpu: `device: auto` would pick a GPU where there is one, and GPU runs are not bit-reproducible
        assert main(["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, tmp_path / name, epochs=1), "seed=7",
                     "device=cpu"]) == 0
        states.append(torch.load(only_run(tmp_path / name) / "ckpt_latest.pth", weights_only=True)["model"])
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_test_mode_reproduces_the_training_figure(trained, tiny_modelnet, tmp_path, main):
    ckpt = trained / "ckpt_best.pth"
    args = ["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, tmp_path), "mode=test", f"load_path={ckpt}"]
    assert main(args) == 0
    run = next((tmp_path / "modelnet40").glob("dgcnn-*"))
    tested = json.loads((run / "metrics.json").read_text())
    trained_metrics = json.loads((trained / "metrics.json").read_text())
    assert tested["test_oa"] == pytest.approx(trained_metrics["test_oa"])


def test_extract_writes_features_and_labels(trained, tiny_modelnet, tmp_path, main):
    args = ["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, tmp_path), "mode=extract",
            f"load_path={trained / 'ckpt_best.pth'}"]
    assert main(args) == 0
    run = next((tmp_path / "modelnet40").glob("dgcnn-*"))
    train = np.load(run / "features_train.npz")
    test = np.load(run / "features_test.npz")
    assert train["features"].shape == (24, 64) and test["features"].shape == (12, 64)  # DGCNN: max+avg of 32
    assert list(train["labels"]) == [0] * 8 + [1] * 8 + [2] * 8                       # dataset order
    assert json.loads((run / "metrics.json").read_text())["encoder_tensors_loaded"] > 0


@pytest.mark.parametrize("extra, message", [
    (["mode=fly"], f"Unknown mode 'fly': set mode to one of {MODES}."),
    (["model.NAME=BaseClz"], "Unknown model.NAME 'BaseClz': set it to one of"),
    (["model.encoder_args.NAME=DGCNNN"], "Unknown model.encoder_args.NAME 'DGCNNN'"),
    (["dataset.common.data_dir=/no/such/dir"], "/no/such/dir"),
    (["epochz=1"], "Unknown config key 'epochz'"),
    (["mode=test", "load_path=/no/ckpt.pth"], "Checkpoint '/no/ckpt.pth' does not exist: set load_path"),
    (["mode=resume", "run_dir=/no/run"], "No run to resume"),
])
def test_user_errors_are_one_sentence_without_traceback(extra, message, tiny_modelnet, tmp_path, main, capsys):
    assert main(["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err


def test_missing_cfg_file(main, capsys):
    assert main(["--cfg", "cfgs/none.yaml"]) == 2
    assert "Config file 'cfgs/none.yaml' does not exist" in capsys.readouterr().err


def test_interrupted_checkpoint_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "ckpt_latest.pth"
    atomic_files.save_torch({"epoch": 1}, str(target))

    def broken_save(obj, path):
        Path(path).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_files.save_torch({"epoch": 2}, str(target))
    assert torch.load.__module__  # torch itself untouched apart from save
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt_latest.pth"]


@pytest.mark.parametrize("pos, message", [
    (torch.zeros(2, 0, 3), "empty point cloud"),
    (torch.tensor([[[0.0, float("nan"), 0.0]]]), "NaN or infinite coordinates"),
    (torch.zeros(2, 5, 2), "each cloud must be (N, 3)"),
])
def test_bad_point_batches_are_rejected(pos, message):
    from plugin.engine.batch import prepare_batch
    from plugin.errors import BadInputError

    with pytest.raises(BadInputError, match=re.escape(message)):
        prepare_batch({"pos": pos, "x": pos, "y": torch.zeros(pos.shape[0])}, torch.device("cpu"), 3)
