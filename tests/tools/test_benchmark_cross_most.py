"""``tools/benchmark_cross_most.py``: its arms, the relabelled links, its resume, its table and its one-sentence errors."""
import json
import sys
from pathlib import Path

import pytest

from plugin.engine import load_config

from ..conftest import load_tool


@pytest.fixture(scope="module")
def bench():
    return load_tool("benchmark_cross_most")


def figures(start: float, student: float, teacher: float) -> dict:
    record = {"last_pl_kept": 0.5, "last_pl_acc": 80.0, "last_pl_from_image": 0.25, "labels_read_for_init": 3,
              "run_dir": "x", "epochs": 2, "seconds": 1.0, "selected_by": "last"}
    for branch in ("image", "image_star", "point"):
        record.update({f"start_student_{branch}_top1": start, f"student_{branch}_top1": student,
                       f"teacher_{branch}_top1": teacher})
    return record


@pytest.fixture
def fake_runs(bench, tmp_path, monkeypatch):
    """``prepare`` and ``run_main`` replaced by recorders; returns the argv and the calls of run_main."""
    calls = []
    monkeypatch.setattr(bench, "prepare", lambda name, args: tmp_path / name)
    __import__("demo")
    monkeypatch.setattr(sys.modules["demo"], "run_main",
                        lambda cfg, extra, root, run_prefix=None: calls.append((run_prefix, extra))
                        or figures(50.0, 60.0, 70.0))
    alignment = tmp_path / "align.pth"
    alignment.write_bytes(b"")
    argv = ["--alignment", str(alignment), "--out", str(tmp_path / "r.json"), "--epochs", "1",
            "--datasets", "real3"]
    return argv, calls


def test_each_arm_sets_the_switches_it_names(bench):
    for name, overrides in bench.ARMS.items():
        cfg = load_config(str(bench.CFG), overrides)
        assert cfg.mode == "selftrain" and cfg.model.NAME == "CrossMoST"
        assert cfg.model.pseudo_labels == ("own" if name == "own" else "joint")
        assert cfg.model.align is (name == "joint")
        assert cfg.model.classifier_init == "examples" and cfg.selftrain.shots == 1


def test_labels_are_renumbered_and_classes_cut(bench, tmp_path):
    source = tmp_path / "views"
    for object_id in ("train_0", "train_1", "test_0"):
        (source / object_id).mkdir(parents=True)
    (source / "train.txt").write_text("train_0 0\ntrain_1 3\n")
    (source / "test.txt").write_text("test_0 1\n")
    (source / "meta.json").write_text(json.dumps({"classes": ["airplane", "bathtub", "bed", "bench"], "views": 10}))
    out = tmp_path / "linked"
    bench.link_relabelled(source, out)
    bench.link_relabelled(source, out)                                     # a second run keeps the links
    assert (out / "train.txt").read_text() == "train_0 0\ntrain_1 2\n"
    assert (out / "test.txt").read_text() == "test_0 1\n"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["classes"] == ["airplane", "bathtub", "bench"] and meta["views"] == 10
    assert (out / "train_1").resolve() == (source / "train_1").resolve()


def test_arms_run_once_resume_and_fill_the_table(bench, fake_runs, capsys):
    argv, calls = fake_runs
    assert bench.main(argv) == 0 and [c[0] for c in calls] == ["real3-joint", "real3-own", "real3-joint-noalign"]
    extra = dict(item.split("=", 1) for item in calls[1][1])
    assert extra["model.pseudo_labels"] == "own" and extra["model.align"] == "False" and extra["epochs"] == "1"
    assert extra["pretrained_path"].endswith("align.pth") and extra["dataset.common.data_dir"].endswith("real3")
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("real3/")]
    assert len(rows) == 3 and "50.00 →  60.00 /  70.00" in rows[0] and "80.00" in rows[0]
    assert bench.main(argv) == 0 and len(calls) == 3                        # resumed: nothing run again
    assert bench.main([*argv[:argv.index("--epochs")], "--epochs", "2", "--datasets", "real3", "--arms", "own"]) == 0
    assert len(calls) == 4                                                  # other epochs: measured anew


def test_bad_input_is_one_sentence(bench, fake_runs, capsys, tmp_path):
    argv, calls = fake_runs
    assert bench.main(["model.no_such_key=1", *argv]) == 2             # overrides before the list options
    assert "no_such_key" in capsys.readouterr().err
    missing = argv.copy()
    missing[missing.index("--alignment") + 1] = str(tmp_path / "nowhere.pth")
    assert bench.main(missing) == 2
    err = capsys.readouterr().err
    assert "pass --alignment" in err and len(err.strip().splitlines()) == 1 and not calls
