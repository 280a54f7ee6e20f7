"""``tools/benchmark_train.py`` at tiny sizes: the old step and the new loop do the same work, and the report."""
import json
import math

import pytest
import torch

from ..conftest import load_tool


@pytest.fixture(scope="module")
def tool():
    return load_tool("benchmark_train")


def test_a_fork_is_a_linked_copy_of_the_start_state(tool):
    base = tool.build_setup(tool.DEFAULT_CFG, torch.device("cpu"), seed=0)
    fork = base.fork()
    params = list(fork.model.parameters())
    optimized = {id(p) for group in fork.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in params}  # the optimizer updates the copy, not the base model
    assert not any(p is q for p, q in zip(params, base.model.parameters()))
    assert all(torch.equal(p, q) for p, q in zip(params, base.model.parameters()))
    assert fork.scheduler.optimizer is fork.optimizer


def test_both_variants_do_the_same_work_and_the_report_holds_the_figures(tool, tmp_path, capsys):
    out = tmp_path / "bench" / "train_step.json"
    args = ["--batch", "4", "--points", "256", "--rounds", "2", "--steps", "2", "--warmup", "1", "--amp", "off",
            "--epoch-steps", "2", "--threads", "2", "--out", str(out)]
    assert tool.main(args) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"settings", "meta", "compare", "amp"}
    assert report["settings"]["batch"] == 4 and report["settings"]["points"] == 256
    assert report["meta"]["threads"] == 2 and report["meta"]["cpu"]

    compare = report["compare"]
    before, after = compare["variants"]["before"], compare["variants"]["after"]
    assert before["steps"] == after["steps"] == 2 * 2
    assert all(v["q1_ms"] <= v["median_ms"] <= v["q3_ms"] and v["median_ms"] > 0 for v in (before, after))
    assert all(v["cpu_median_ms"] > 0 for v in (before, after))
    assert compare["ratio"] == pytest.approx(after["median_ms"] / before["median_ms"])
    # the same start state, batch and seed: the same loss, on the first step and over every round
    first = compare["first_step_loss"]
    assert math.isfinite(first["before"]) and first["after"] == pytest.approx(first["before"], rel=1e-5)
    assert all(math.isfinite(r["before_loss"]) and math.isfinite(r["after_loss"]) for r in compare["rounds"])
    assert compare["max_round_loss_diff"] < 1e-4
    assert [r["order"] for r in compare["rounds"]] == [["before", "after"], ["after", "before"]]

    (amp,) = report["amp"]
    assert amp["amp"] == "off" and amp["steps"] == 2 and amp["instances_per_s"] > 0 and amp["peak_mib"] is None
    assert math.isfinite(amp["loss"]) and amp["speedup_vs_off"] == 1.0
    table = capsys.readouterr().out
    assert "before (old loop, 13acf64 ref.)" in table and "after (TrainingLoop)" in table and "inst/s" in table
