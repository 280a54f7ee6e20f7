"""``mode=nshot``: N-way K-shot folds end to end on the tiny dataset, resumable per fold, clear errors."""
import json

import pytest

from plugin.engine.modes.nshot import NShotRunner

from .conftest import DGCNN_CFG, only_run, tiny_overrides

NSHOT = ["mode=nshot", "nshot.ways=2", "nshot.shots=2", "nshot.queries=2", "nshot.folds=2", "nshot.epochs=1"]
VOLATILE = ("seconds", "run_dir")


def nshot_args(data_dir, root, *extra):
    return ["--cfg", DGCNN_CFG, *tiny_overrides(data_dir, root, epochs=1), *NSHOT, *extra]


def figures(run):
    metrics = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in VOLATILE}


@pytest.fixture(scope="module")
def uninterrupted(tiny_modelnet, tmp_path_factory, main):
    root = tmp_path_factory.mktemp("nshot")
    assert main(nshot_args(tiny_modelnet, root)) == 0
    return only_run(root)


def test_a_run_writes_mean_std_per_fold_figures_and_the_splits(uninterrupted):
    metrics = figures(uninterrupted)
    assert metrics["selected_by"] == "last" and metrics["ways"] == 2 and metrics["shots"] == 2
    assert metrics["queries"] == 2 and metrics["folds"] == 2 and metrics["epochs"] == 1
    assert len(metrics["query_oa"]) == len(metrics["per_fold"]) == 2
    oa = metrics["query_oa"]
    assert metrics["query_oa_mean"] == pytest.approx(sum(oa) / 2)
    assert metrics["query_oa_std"] == pytest.approx(abs(oa[0] - oa[1]) / 2)
    assert all(0 <= fold["query_oa"] <= 100 for fold in metrics["per_fold"])
    splits = json.loads((uninterrupted / "nshot_splits.json").read_text())
    assert {k: splits[k] for k in ("seed", "ways", "shots", "queries")} == {"seed": 0, "ways": 2, "shots": 2,
                                                                            "queries": 2}
    assert splits["support_split"] == "train" and splits["query_split"] == "test" and len(splits["folds"]) == 2
    for fold in splits["folds"]:
        assert len(fold["classes"]) == 2 and len(fold["support"]) == 4 and len(fold["query"]) == 4
    done = json.loads((uninterrupted / "nshot_folds.json").read_text())["folds"]
    assert [f["fold"] for f in done] == [0, 1] and done == metrics["per_fold"]
    assert not (uninterrupted / "ckpt_best.pth").exists()  # nothing is selected
    assert "fold 2/2 classes" in (uninterrupted / "log.txt").read_text()


def test_resuming_after_fold_one_runs_only_fold_two_with_the_same_figures(uninterrupted, tiny_modelnet, tmp_path,
                                                                          main, monkeypatch):
    original, ran = NShotRunner.run_fold, []

    def killed_at_fold_two(self, index, state):
        if index == 1:
            raise KeyboardInterrupt
        return original(self, index, state)

    monkeypatch.setattr(NShotRunner, "run_fold", killed_at_fold_two)
    assert main(nshot_args(tiny_modelnet, tmp_path)) == 130
    run = only_run(tmp_path)
    assert [f["fold"] for f in json.loads((run / "nshot_folds.json").read_text())["folds"]] == [0]
    assert not (run / "metrics.json").exists()

    def spy(self, index, state):
        ran.append(index)
        return original(self, index, state)

    monkeypatch.setattr(NShotRunner, "run_fold", spy)
    assert main(["--cfg", DGCNN_CFG, f"root_dir={tmp_path}", "mode=resume"]) == 0
    assert ran == [1]
    assert figures(run) == figures(uninterrupted)
    assert (run / "nshot_splits.json").read_text() == (uninterrupted / "nshot_splits.json").read_text()


def test_a_fold_killed_mid_training_continues_from_its_checkpoint(tiny_modelnet, tmp_path, main, monkeypatch):
    two_epochs = tmp_path / "straight"
    assert main(nshot_args(tiny_modelnet, two_epochs, "nshot.epochs=2")) == 0
    original = NShotRunner._save

    def killed_after_fold_two_epoch_one(self, name, epoch, loop_state):
        original(self, name, epoch, loop_state)
        if self.fold == 1 and epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(NShotRunner, "_save", killed_after_fold_two_epoch_one)
    killed = tmp_path / "killed"
    assert main(nshot_args(tiny_modelnet, killed, "nshot.epochs=2")) == 130
    monkeypatch.setattr(NShotRunner, "_save", original)
    assert main(["--cfg", DGCNN_CFG, f"root_dir={killed}", "mode=resume"]) == 0
    log = (only_run(killed) / "log.txt").read_text()
    assert "resumed after epoch 1" in log
    assert figures(only_run(killed)) == figures(only_run(two_epochs))


@pytest.mark.parametrize("extra, words", [
    (["nshot.ways=4"], "nshot.ways=4 exceeds the 3 classes"),
    (["nshot.shots=9"], "fewer than nshot.shots=9"),
    (["nshot.queries=5"], "fewer than nshot.queries=5"),
    (["nshot.epochs=0"], "nshot.epochs is 0"),
    (["pretrained_path=/no/such/ckpt.pth"], "pretrained_path"),
])
def test_bad_settings_exit_2_with_one_sentence(extra, words, tiny_modelnet, tmp_path, main, capsys):
    assert main(nshot_args(tiny_modelnet, tmp_path, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "modelnet40").exists() or not any((tmp_path / "modelnet40").iterdir())


def test_every_fold_starts_from_the_pretrained_encoder(tiny_modelnet, tmp_path, main):
    import torch
    from openpoints.models import build_model_from_cfg

    from plugin.engine import load_config

    cfg = load_config(DGCNN_CFG, tiny_overrides(tiny_modelnet, tmp_path))
    state = build_model_from_cfg(cfg.model.encoder_args).state_dict()
    path = tmp_path / "pretrained.pth"
    torch.save({"encoder": state}, path)
    assert main(nshot_args(tiny_modelnet, tmp_path / "runs", f"pretrained_path={path}")) == 0
    run = only_run(tmp_path / "runs")
    assert (run / "log.txt").read_text().count(f"loaded {len(state)} encoder tensors from {path}") == 2
    assert figures(run)["pretrained_path"] == str(path)
