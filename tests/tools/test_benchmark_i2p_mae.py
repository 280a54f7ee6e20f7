"""``tools/benchmark_i2p_mae.py``: the pre-training folder it links, its configs, its resume and its errors."""
import json
from pathlib import Path

import pytest
import torch
from openpoints.models.build import build_model_from_cfg

from plugin.engine import load_config

from ..conftest import load_tool


@pytest.fixture(scope="module")
def bench():
    return load_tool("benchmark_i2p_mae")


def _layout(root: Path, shapes: dict, names: list) -> Path:
    """A modelnet40_normal_resampled folder with ``shapes`` {split: [ids]} (one-line files) and ``names``."""
    for split, ids in shapes.items():
        for shape_id in ids:
            (root / shape_id.rsplit("_", 1)[0]).mkdir(parents=True, exist_ok=True)
            (root / shape_id.rsplit("_", 1)[0] / f"{shape_id}.txt").write_text(f"{shape_id}\n")
        (root / f"modelnet40_{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    (root / "modelnet40_shape_names.txt").write_text("".join(f"{n}\n" for n in names))
    return root


def test_the_pretraining_folder_holds_both_train_splits_and_never_the_real_test_split(bench, tmp_path):
    shapes = _layout(tmp_path / "shapes", {"train": ["bench_0000", "box_0001"], "test": ["box_0002"]},
                     ["box", "bench"])
    real = _layout(tmp_path / "real", {"train": ["bench_0001", "airplane_0003"], "test": ["bench_0002"]},
                   ["airplane", "bench"])
    out = tmp_path / "pretrain"
    assert bench.link_pretraining_set(shapes, real, out, limit_real=0) == 4
    listed = (out / "modelnet40_train.txt").read_text().split()
    assert sorted(listed) == ["airplane_0003", "bench_0001", "bench_5000", "box_5001"]  # procedural ids offset
    for shape_id in listed:  # every listed id reads the file it stands for
        assert (out / shape_id.rsplit("_", 1)[0] / f"{shape_id}.txt").read_text().strip() in (
            shape_id, f"{shape_id.rsplit('_', 1)[0]}_{int(shape_id.rsplit('_', 1)[1]) - 5000:04d}")
    assert not (out / "bench" / "bench_0002.txt").exists() and not (out / "modelnet40_test.txt").exists()
    assert (out / "modelnet40_shape_names.txt").read_text().split() == ["box", "bench", "airplane"]
    assert bench.link_pretraining_set(shapes, real, out, limit_real=1) == 3  # rerun over existing links


def test_the_pretraining_export_loads_strictly_into_the_probed_encoder(bench):
    pre = load_config(str(bench.PRETRAIN_CFG), ["model.teacher.pretrained=none"])
    svm = load_config(str(bench.SVM_CFG), [])
    assert pre.model.encoder_args == svm.model.encoder_args  # one encoder, from cfgs/demo_i2p_mae/default.yaml
    torch.manual_seed(0)
    exported = build_model_from_cfg(pre.model).export_state()["encoder"]
    probe = build_model_from_cfg(svm.model)
    probe.encoder.load_state_dict(exported, strict=True)


def test_an_arm_already_measured_is_not_run_again(bench, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    real = _layout(tmp_path / "real", {"train": ["bench_0001"], "test": ["bench_0002"]}, ["bench"])
    ran = []

    def fake_arm(name, pre, args):
        ran.append(name)
        return {"svm": {"oa": 90.0, "macc": 80.0, "C": 0.1, "low_shot": {}}}

    monkeypatch.setattr(bench, "arm_result", fake_arm)
    argv = ["--data", str(data), "--real", str(real), "--out", str(tmp_path / "r.json"), "--per-class-train", "1",
            "--epochs", "1"]
    assert bench.main(argv) == 0
    assert ran == list(bench.ARMS)
    assert bench.main(argv) == 0 and ran == list(bench.ARMS)  # the second run measures nothing
    assert "already measured" in capsys.readouterr().out
    assert bench.main([*argv[:-1], "2"]) == 0 and len(ran) == 2 * len(bench.ARMS)  # other settings: measured anew
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["epochs"] == 2


def test_a_missing_real_folder_or_a_wrong_key_is_one_sentence(bench, tmp_path, capsys):
    assert bench.main(["--real", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r.json")]) == 2
    assert "pass --real" in capsys.readouterr().err
    real = _layout(tmp_path / "real", {"train": ["bench_0001"]}, ["bench"])
    assert bench.main(["--real", str(real), "--out", str(tmp_path / "r.json"), "model.no_such_key=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no_such_key" in err and len(err.strip().splitlines()) == 1
