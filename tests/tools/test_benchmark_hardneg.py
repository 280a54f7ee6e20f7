"""``tools/benchmark_hardneg.py``: its arms, its resume, its table and its one-sentence errors."""
import json
from pathlib import Path

import pytest

from plugin.engine import load_config

from ..conftest import load_tool

FIGURES = {"i2s_top1": 10.0, "i2s_top5": 30.0, "i2s_map": 20.0, "s2i_top1": 11.0, "s2i_top5": 31.0, "s2i_map": 21.0}


@pytest.fixture(scope="module")
def bench():
    return load_tool("benchmark_hardneg")


@pytest.fixture
def fake_runs(bench, tmp_path, monkeypatch):
    """``prepare`` and ``arm_result`` replaced by recorders; returns the argv and the list of arms run."""
    ran = []
    monkeypatch.setattr(bench, "prepare", lambda args: {"i2i": tmp_path / "a", "i2l2": tmp_path / "b"})

    def fake_arm(pre, args, stores):
        ran.append(pre)
        record = {"retrieval": dict(FIGURES), "svm": {"oa": 90.0, "macc": 80.0, "C": 0.1, "low_shot": {}}}
        if pre is not None:
            record["pretrain"] = {"epochs": args.epochs, "best_loss": 1.5, "seconds": 120.0, "run_dir": "x"}
        return record

    monkeypatch.setattr(bench, "arm_result", fake_arm)
    real = tmp_path / "real"
    real.mkdir()
    (real / "modelnet40_train.txt").write_text("bench_0001\n")
    landmarks = tmp_path / "landmarks.json"
    landmarks.write_text("{}")
    argv = ["--real", str(real), "--landmarks", str(landmarks), "--out", str(tmp_path / "r.json"), "--epochs", "1"]
    return argv, ran


def test_each_pretrained_arm_trains_its_objective_and_similarity(bench, tmp_path):
    arms = bench.arm_overrides({"i2l2": tmp_path / "tiny"})
    assert arms["random init"] is None
    for name, overrides in arms.items():
        if overrides is None:
            continue
        cfg = load_config(str(bench.CFGS / "pretrain.yaml"), overrides)
        assert cfg.model.objective == ("plain" if name == "plain" else "hardneg")
        if name.startswith("hardneg"):
            assert cfg.model.similarity.kind == name.split("-")[1]
    assert f"model.similarity.dir={tmp_path / 'tiny'}" in arms["hardneg-i2l2"]  # the tiny-CLIP (I2L)^2 store


def test_the_probe_builds_the_pretrained_encoder(bench):
    pre = load_config(str(bench.CFGS / "pretrain.yaml"), [])
    svm = load_config(str(bench.CFGS / "svm.yaml"), [])
    assert pre.model.encoder_args == svm.model.encoder_args  # cfgs/_blocks/pointnext_s.yaml in both


def test_measured_arms_are_kept_and_the_table_shows_them(bench, fake_runs, capsys):
    argv, ran = fake_runs
    assert bench.main(argv) == 0 and len(ran) == 4
    out = capsys.readouterr().out
    rows = {line.split("  ")[0]: line for line in out.splitlines() if line.startswith(("random", "plain", "hardneg"))}
    assert set(rows) == {"random init", "plain", "hardneg-i2i", "hardneg-i2l2"}
    assert "10.00" in rows["plain"] and "2.0 min" in rows["plain"] and "-" in rows["random init"]
    assert bench.main(argv) == 0 and len(ran) == 4  # resumed: nothing measured again
    assert bench.main([*argv, "--arms", "plain"]) == 0 and len(ran) == 4
    assert bench.main([*argv[:-1], "2", "--arms", "plain"]) == 0 and len(ran) == 5  # other epochs: anew
    results = json.loads(Path(argv[argv.index("--out") + 1]).read_text())
    assert results["settings"]["epochs"] == 2 and list(results["arms"]) == ["plain"]


def test_bad_input_is_one_sentence(bench, fake_runs, capsys):
    argv, ran = fake_runs
    assert bench.main([*argv, "--arms", "hardneg-xyz"]) == 2
    assert "Unknown arm(s) hardneg-xyz" in capsys.readouterr().err
    assert bench.main([*argv, "model.no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err
    missing = argv.copy()
    missing[missing.index("--landmarks") + 1] = "/nowhere/landmarks.json"
    assert bench.main(missing) == 2
    err = capsys.readouterr().err
    assert "pass --landmarks" in err and len(err.strip().splitlines()) == 1 and not ran
