"""``tools/benchmark_depth_ablation.py`` on the tiny ModelNet layout: one row per setting, cached, resumable."""
import json

import numpy as np
import pytest

from tests.engine.conftest import tiny_modelnet  # noqa: F401  (fixture)

from ..conftest import load_tool


@pytest.fixture(scope="module")
def tool():
    return load_tool("benchmark_depth_ablation")


def test_rows_per_setting_and_cache_reuse(tool, tiny_modelnet, tmp_path, capsys, monkeypatch):
    args = ["--data-dir", str(tiny_modelnet), "--out", str(tmp_path / "out.json"), "--cache", str(tmp_path / "cache"),
            "--settings", "weighted:1", "min:3", "--num-points", "128", "--image-size", "32", "--shots", "1",
            "--draws", "2"]
    assert tool.main(args) == 0
    result = json.loads((tmp_path / "out.json").read_text())
    assert [r["setting"] for r in result["rows"]] == ["weighted:1", "min:3"] and (result["train"], result["test"]) == (24, 12)
    weighted, dilated = result["rows"]
    assert 0 < weighted["coverage"] < dilated["coverage"] < 1          # R = 3 covers more pixels than R = 1
    assert all(0 <= r["oa"] <= 100 and set(r["low_shot"]) == {"1"} for r in result["rows"])
    cached = np.load(tmp_path / "cache" / "min-R3-32px-128-train24.npz")
    assert cached["features"].shape == (24, 320)                      # features_only top level of EfficientNet-Lite0
    table = capsys.readouterr().out
    assert f"| min:3 | {100 * dilated['coverage']:.1f}% | {dilated['oa']:.2f} |" in table

    monkeypatch.setattr(tool, "encode_split", lambda *a, **k: pytest.fail("cached features were encoded again"))
    assert tool.main(args) == 0
    assert json.loads((tmp_path / "out.json").read_text())["rows"] == result["rows"]


def test_per_class_train_keeps_the_first_clouds_of_each_class(tool, tiny_modelnet, tmp_path):
    args = ["--data-dir", str(tiny_modelnet), "--out", str(tmp_path / "out.json"), "--cache", str(tmp_path / "cache"),
            "--settings", "min:1", "--num-points", "128", "--image-size", "32", "--shots", "1", "--draws", "1",
            "--per-class-train", "3"]
    assert tool.main(args) == 0
    assert (json.loads((tmp_path / "out.json").read_text())["train"]) == 9
    cached = np.load(tmp_path / "cache" / "min-R1-32px-128-train9.npz")
    assert cached["labels"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_bad_setting_and_missing_data(tool, tmp_path, capsys):
    with pytest.raises(SystemExit):
        tool.main(["--settings", "max:2"])
    assert "write reduction:dilation" in capsys.readouterr().err
    assert tool.main(["--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
