"""``mode=svm`` end to end on the tiny dataset: random init, a pre-trained encoder, the feature cache."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from openpoints.models import build_model_from_cfg

import plugin.engine.modes.svm as svm_mode
from plugin.engine import load_config
from plugin.engine.data import probe_loader

from .conftest import REPO, tiny_overrides

SVM_CFG = str(REPO / "cfgs" / "modelnet40" / "pic_at_point-svm.yaml")


def svm_args(data_dir: Path, root: Path, *extra: str):
    """The tiny overrides without the classifier head, which the svm config does not have."""
    base = [o for o in tiny_overrides(data_dir, root) if not o.startswith("model.cls_args")]
    return ["--cfg", SVM_CFG, *base, "svm.folds=4", *extra]


def only_run(root: Path) -> Path:
    runs = list((root / "modelnet40").glob("pic_at_point-svm-*"))
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def baseline(tiny_modelnet, tmp_path_factory, main):
    """One random-init svm run."""
    root = tmp_path_factory.mktemp("svm")
    assert main(svm_args(tiny_modelnet, root)) == 0
    return only_run(root)


@pytest.fixture(scope="module")
def pretrained_ckpt(tiny_modelnet, tmp_path_factory):
    """A pre-training checkpoint: ``encoder`` of the tiny svm config, initialised with another seed."""
    cfg = load_config(SVM_CFG, [o for o in tiny_overrides(tiny_modelnet, "log") if not o.startswith("model.cls_args")])
    torch.manual_seed(123)
    encoder = build_model_from_cfg(cfg.model.encoder_args)
    path = tmp_path_factory.mktemp("pretrain") / "ckpt_best.pth"
    torch.save({"encoder": encoder.state_dict(), "encoder_args": cfg.model.encoder_args.dict(), "epoch": 5}, path)
    return path, len(encoder.state_dict())


def test_random_init_run_writes_metrics_and_features(baseline):
    metrics = json.loads((baseline / "metrics.json").read_text())
    assert {"oa", "macc", "C", "cv_oa"} <= set(metrics)
    assert metrics["C"] in (0.001, 0.01, 0.1, 1.0) and set(metrics["cv_oa"]) == {"0.001", "0.01", "0.1", "1.0"}
    assert metrics["oa"] > 100 / 3 + 20 and 0 <= metrics["macc"] <= 100   # random DGCNN features separate toy shapes
    assert metrics["encoder_tensors_loaded"] == 0 and metrics["load_path"] is None
    assert metrics["features_reused"] == {"train": False, "test": False}
    train, test = np.load(baseline / "features_train.npz"), np.load(baseline / "features_test.npz")
    assert train["features"].shape == (24, 64) and test["features"].shape == (12, 64)   # global: max + avg of 32
    assert metrics["pooling"] == "global" and metrics["normalize"] is True
    assert list(train["labels"]) == [0] * 8 + [1] * 8 + [2] * 8                          # dataset order
    assert "encoder randomly initialised" in (baseline / "log.txt").read_text()


def test_global_pooling_is_dgcnns_max_and_mean_without_augmentation(baseline, tiny_modelnet, tmp_path, main):
    """Same seed, same features (test-time transforms on the train split); DGCNN's own embedding is the
    max and the mean over points of its tapped features."""
    assert main(svm_args(tiny_modelnet, tmp_path, "svm.pooling=global,max,mean")) == 0
    run = only_run(tmp_path)
    features = np.load(run / "features_train.npz")["features"]
    assert features.shape == (24, 128)
    np.testing.assert_array_equal(features[:, :64], np.load(baseline / "features_train.npz")["features"])
    np.testing.assert_allclose(features[:, :64], features[:, 64:], rtol=1e-5, atol=1e-6)  # pooling vs adaptive pool


def test_probe_clouds_are_centred_and_scaled_like_the_pretraining_clouds(baseline, tiny_modelnet, tmp_path, main):
    cfg = load_config(SVM_CFG, [o for o in tiny_overrides(tiny_modelnet, tmp_path) if not o.startswith("model.cls")])
    batches = {}
    for normalize in (True, False):
        np.random.seed(0)                                   # the train split draws its points at random
        batches[normalize] = next(iter(probe_loader(cfg, "train", normalize=normalize)))["pos"]
    normalised, raw = batches[True], batches[False]
    np.testing.assert_allclose(normalised.mean(dim=1).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(normalised.norm(dim=-1).max(dim=1).values.numpy(), 1, atol=1e-5)
    centred = raw - raw.mean(dim=1, keepdim=True)
    expected = centred / centred.norm(dim=-1).max(dim=1).values[:, None, None]
    np.testing.assert_allclose(normalised.numpy(), expected.numpy(), atol=1e-5)
    assert (raw.norm(dim=-1).max(dim=1).values - 1).abs().max() > 0.1      # the raw clouds are not in that frame
    # the normalisation is part of the cached features' fingerprint
    cache = tmp_path / "cache"
    cache.mkdir()
    for split in ("train", "test"):
        shutil.copy(baseline / f"features_{split}.npz", cache)
    assert main(svm_args(tiny_modelnet, tmp_path, f"svm.feature_cache={cache}", "svm.normalize=False")) == 0
    metrics = json.loads((only_run(tmp_path) / "metrics.json").read_text())
    assert metrics["features_reused"] == {"train": False, "test": False} and metrics["normalize"] is False


def test_pretrained_encoder_is_loaded(pretrained_ckpt, baseline, tiny_modelnet, tmp_path, main):
    path, n_tensors = pretrained_ckpt
    assert main(svm_args(tiny_modelnet, tmp_path, f"load_path={path}")) == 0
    run = only_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["encoder_tensors_loaded"] == n_tensors and metrics["load_path"] == str(path)
    assert f"loaded {n_tensors} encoder tensors from {path}" in (run / "log.txt").read_text()
    assert not np.array_equal(np.load(run / "features_train.npz")["features"],
                              np.load(baseline / "features_train.npz")["features"])


def test_cache_is_reused_without_extracting(baseline, tiny_modelnet, tmp_path, main, monkeypatch):
    seen = {}

    def no_extraction(*args, **kwargs):
        raise AssertionError("features were extracted although the cache matches")

    def spy_probe(train_x, train_y, test_x, test_y, **kwargs):
        seen.update(train=train_x, test_labels=test_y)
        return original_probe(train_x, train_y, test_x, test_y, **kwargs)

    original_probe = svm_mode.linear_probe
    monkeypatch.setattr(svm_mode, "tap_features", no_extraction)
    monkeypatch.setattr(svm_mode, "linear_probe", spy_probe)
    assert main(svm_args(tiny_modelnet, tmp_path, f"svm.feature_cache={baseline}")) == 0
    metrics = json.loads((only_run(tmp_path) / "metrics.json").read_text())
    first = json.loads((baseline / "metrics.json").read_text())
    assert metrics["features_reused"] == {"train": True, "test": True}
    assert {k: metrics[k] for k in ("oa", "macc", "C", "cv_oa")} == {k: first[k] for k in ("oa", "macc", "C", "cv_oa")}
    np.testing.assert_array_equal(seen["train"], np.load(baseline / "features_train.npz")["features"])
    assert len(seen["test_labels"]) == 12


def test_stale_cache_is_replaced(baseline, tiny_modelnet, tmp_path, main):
    cache = tmp_path / "cache"
    assert main(svm_args(tiny_modelnet, tmp_path / "a", f"svm.feature_cache={cache}", "seed=1")) == 0
    assert json.loads((only_run(tmp_path / "a") / "metrics.json").read_text())["features_reused"]["train"] is False
    stale = np.load(cache / "features_train.npz")["features"]
    assert main(svm_args(tiny_modelnet, tmp_path / "b", f"svm.feature_cache={cache}", "seed=2")) == 0  # new init
    run = only_run(tmp_path / "b")
    assert json.loads((run / "metrics.json").read_text())["features_reused"]["train"] is False
    assert "was made by another encoder" in (run / "log.txt").read_text()
    assert not np.array_equal(np.load(cache / "features_train.npz")["features"], stale)


@pytest.mark.parametrize("extra, message", [
    (["load_path=/no/ckpt.pth"], "Checkpoint '/no/ckpt.pth' does not exist: set load_path"),
    (["svm.pooling=sum"], "Unknown pooling 'sum' in svm.pooling"),
    (["svm.cs=[]"], "give one or more positive values in svm.cs"),
    (["model.encoder_args.NAME=DGCNNN"], "Unknown model.encoder_args.NAME 'DGCNNN'"),
])
def test_user_errors(extra, message, tiny_modelnet, tmp_path, main, capsys):
    assert main(svm_args(tiny_modelnet, tmp_path, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err, err


@pytest.mark.realdata
def test_random_init_probe_on_real_modelnet(modelnet_dir, tmp_path, main):
    """A small random DGCNN on the real 3-class subset: the probe beats the majority class clearly."""
    args = ["--cfg", SVM_CFG, f"dataset.common.data_dir={modelnet_dir}", f"root_dir={tmp_path}",
            "num_points=64", "dataset.common.num_points=64", "model.encoder_args.channels=16",
            "model.encoder_args.embed_dim=64", "model.encoder_args.k=10"]
    assert main(args) == 0
    metrics = json.loads((only_run(tmp_path) / "metrics.json").read_text())
    assert metrics["train_samples"] == 905 and metrics["test_samples"] == 170
    assert metrics["oa"] > 100 * 100 / 170 + 15, metrics   # airplane: 100 of the 170 test shapes


def test_low_shot_figures_reuse_the_full_probes_c(baseline, tiny_modelnet, tmp_path, main):
    args = svm_args(tiny_modelnet, tmp_path, f"svm.feature_cache={baseline}", "svm.low_shot.shots=[1,2]",
                    "svm.low_shot.draws=2")
    assert main(args) == 0
    run = only_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["low_shot"]) == {"1", "2"} and all(0 <= r["oa_mean"] <= 100 for r in metrics["low_shot"].values())
    assert metrics["C"] == json.loads((baseline / "metrics.json").read_text())["C"]
    assert "low-shot test OA" in (run / "log.txt").read_text()
