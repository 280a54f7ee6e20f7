"""``tools/benchmark_gpu.py`` without a GPU: the clean exit, every case and model run on CPU, the JSON and the table."""
import json

import pytest
import torch

from ..conftest import load_tool


@pytest.fixture(scope="module")
def tool():
    return load_tool("benchmark_gpu")


def test_without_a_gpu_it_says_so_and_exits_0(tool, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "ops_cuda.json"
    assert tool.main(["--out", str(out)]) == 0
    assert "no CUDA device is visible" in capsys.readouterr().out
    assert not out.exists()


def test_every_case_runs_and_the_report_round_trips(tool, ext, tmp_path, capsys):
    cases = tool.build_cases(quick=True)
    assert {c.name for c in cases} >= {"furthest_point_sample", "knn", "ball_query", "group_points", "three_nn",
                                       "rasterize_points", "splat_weighted_depth"}
    rows = tool.measure_ops(cases, "cpu", tool.wall_time_ms, 1)
    assert [r["op"] for r in rows] == [c.name for c in cases]
    assert all(r["kernel_ms"] > 0 and r["speedup"] == r["reference_ms"] / r["kernel_ms"] for r in rows)
    group = next(r for r in rows if r["op"] == "group_points")
    assert group["speedup_vs_gather"] == group["gather_ms"] / group["kernel_ms"]

    targets = tool.check_targets(rows)
    assert len(targets) == len(rows) + 1 and all(t.split()[0] in ("PASS", "MISS") for t in targets)
    knn = next(t for t in targets if t.split()[1] == "knn")
    assert "(target >= 3x)" in knn and any("torch.gather (target >= 1.5x)" in t for t in targets)

    report = {"meta": {"device": "test"}, "ops": rows, "models": [], "targets": targets}
    path = tmp_path / "out" / "ops_cuda.json"
    tool.write_report(str(path), report)
    assert json.loads(path.read_text()) == report
    steps = tmp_path / "steps.tsv"
    steps.write_text("build\tok\t19\tsm_90\ntests\tFAILED\t300\t1 failed, 900 passed\n")
    assert tool.main(["--table", str(path), "--steps", str(steps)]) == 0
    table = capsys.readouterr().out
    assert "GPU check: test" in table and "tests      FAILED       300  1 failed, 900 passed" in table
    assert all(r["op"] in table for r in rows) and targets[0] in table


def test_models_run_with_both_op_backends(tool, ext):
    from pointnet2_ops import _native

    native = _native._C
    rows = tool.measure_models("cpu", tool.wall_time_ms, 1, quick=True)
    assert _native._C is native  # restored after the reference runs
    assert [(r["model"], r["mode"], r["ops"]) for r in rows] == [
        (model, mode, ops) for model, mode in [("PointNeXt-S", "inference"), ("PointNeXt-S", "training"),
                                               ("DGCNN", "inference")] for ops in ("native", "reference")]
    assert all(r["instances_per_s"] == pytest.approx(r["batch"] / r["ms"] * 1e3) for r in rows)
