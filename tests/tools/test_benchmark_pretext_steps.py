"""``tools/benchmark_pretext_steps.py --sizes tiny`` on the CPU (every part, Cross-MoST's included, the JSON, the table,
bad options), and its step in ``tools/gpu_check.sh``, run in a copy of the script with a stand-in Python that pretends
to see a GPU."""
import json
import math
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ..conftest import REPO, load_tool, one_sentence

STEP_PARTS = {"i2p_mae": ("teach", "teacher_forward"), "hardneg": ("weights",),
              "cross_most": ("teacher", "teacher_image", "teacher_point", "ema_update")}


@pytest.fixture(scope="module")
def tool():
    return load_tool("benchmark_pretext_steps")


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_tiny_cpu_run_writes_every_figure(tool, tmp_path, capsys):
    out = tmp_path / "bench" / "pretext_steps_cpu.json"
    argv = ["--device", "cpu", "--sizes", "tiny", "--threads", "1", "--tmp", str(tmp_path), "--out", str(out)]
    assert tool.main(argv) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"settings", "meta", "i2p_mae", "hardneg", "cross_most", "precompute", "targets"}
    s = report["settings"]
    assert (s["sizes"], s["device_type"], s["amp"], s["amp_dtype"], s["steps"], s["warmup"]) == \
        ("tiny", "cpu", "off", None, 2, 1)
    assert s["parts"] == list(tool.PARTS) and report["meta"]["device"] == "cpu"

    for part, timed in STEP_PARTS.items():
        row = report[part]
        assert "error" not in row, row
        assert row["steps"] == 2 and len(row["step_ms"]) == 2 and all(_positive(t) for t in row["step_ms"])
        for key in ("s_per_step", "q1_s", "q3_s", "steps_per_s", "instances_per_s", "trainable_params"):
            assert _positive(row[key]), (part, key)
        assert row["q1_s"] <= row["s_per_step"] <= row["q3_s"]
        assert row["steps_per_s"] == pytest.approx(1 / row["s_per_step"])
        assert row["instances_per_s"] == pytest.approx(row["batch"] / row["s_per_step"])
        assert row["optimizer"] == "AdamW" and math.isfinite(row["loss"])
        assert row["peak_mib"] is None and row["peak_gb"] is None  # CUDA only
        for name in timed:  # called once per step, a part of it
            assert row[name]["calls"] == 2 and _positive(row[name]["median_ms"]), (part, name)
            assert 0 < row[name]["share"] < 1, (part, name)
    i2p = report["i2p_mae"]
    assert (i2p["batch"], i2p["points"], i2p["teacher"]["name"]) == (2, 256, "tiny-clip-test")
    assert i2p["cfg"] == "cfgs/shapenet/i2p_mae.yaml" and "model.teacher.pretrained=none" in i2p["overrides"]
    assert i2p["teacher_forward"]["share"] <= i2p["teach"]["share"]  # the ViT forward is inside teach
    hard = report["hardneg"]
    assert (hard["batch"], hard["points"], hard["kind"], hard["encoder"]) == (8, 256, "i2i", "PointNextEncoder")
    assert hard["batch_categories"] > 1  # W mixes same-category entries of the store and alpha across categories
    most = report["cross_most"]
    assert (most["batch"], most["points"], most["image_size"], most["classes"]) == (4, 128, 32, 8)
    assert most["cfg"] == "cfgs/modelnet40/cross_most.yaml" and most["image_encoder"]["name"] == "tiny-clip-test"
    assert "model.image_encoder.pretrained=none" in most["overrides"] and most["point_encoder"]["embed_dim"] == 32
    assert (most["pseudo_labels"], most["threshold"], most["pl_kept"]) == ("joint", 0.0, 1.0)  # CE on every pair
    assert most["align"] and most["fairness"] and most["mim"] and most["mpm"]
    assert set(most["loss_terms"]) == {"cls", "fair", "align", "mim", "mpm", "gl"}
    assert all(math.isfinite(v) for v in most["loss_terms"].values())
    for key in ("teacher_params", "lr", "param_groups"):
        assert _positive(most[key]), key
    # the teacher's image and point passes add up to its share; 3 EMA updates (1 warm-up, 2 timed): step 3's momentum
    assert most["teacher"]["share"] == pytest.approx(most["teacher_image"]["share"] + most["teacher_point"]["share"])
    assert most["ema_momentum"] == pytest.approx(0.99 + (0.9998 - 0.99) * 3 / 400)

    pre = report["precompute"]
    assert "error" not in pre, pre
    assert (pre["objects"], pre["views"], pre["image_size"], pre["encoder"]["name"]) == (4, 2, 32, "tiny-clip-test")
    for key in ("embedding_objects_per_s", "similarity_objects_per_s", "command_objects_per_s", "write_seconds"):
        assert _positive(pre[key]), key
    assert pre["embedding_images_per_s"] == pytest.approx(2 * pre["embedding_objects_per_s"])
    assert pre["throughput_json"]["objects_embedded"] == 4 and pre["throughput_json"]["device"] == "cpu"
    assert not list(tmp_path.glob("pretext_precompute_*"))  # the synthetic views folder is removed

    assert len(report["targets"]) == 1 and report["targets"][0].startswith("n/a")  # targets: full size on CUDA
    table = capsys.readouterr().out
    assert "I2P-MAE (ViT teacher)" in table and "CLIPAlign hardneg-i2i" in table and "precompute_similarity" in table
    assert "Cross-MoST selftrain" in table and "teacher = tiny-clip-test" in table and "EMA update" in table
    assert tool.main(["--table", str(out)]) == 0  # the table of a stored report, as gpu_check.sh prints it
    printed = capsys.readouterr().out.strip()
    assert printed == tool.format_table(report) and printed in table


def test_targets_are_checked_for_a_full_cuda_run(tool):
    report = {"settings": {"device_type": "cuda", "sizes": "full"},
              "i2p_mae": {"s_per_step": 0.25, "peak_gb": 23.5}}
    passed, missed = tool.check_targets(report)
    assert passed.startswith("PASS I2P-MAE step 0.250 s (target <= 0.3; paper 1.19")
    assert missed.startswith("MISS I2P-MAE peak memory 23.5 GB (target <= 22; paper 22.4")
    assert tool.check_targets({**report, "i2p_mae": {"error": "RuntimeError: out of memory"}}) == []


def test_a_failing_part_is_recorded_and_the_status_is_1(tool, tmp_path, monkeypatch, capsys):
    def out_of_memory(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(tool, "measure_hardneg", out_of_memory)
    monkeypatch.chdir(tmp_path)
    assert tool.main(["--device", "cpu", "--sizes", "tiny", "--parts", "hardneg", "--threads", "1"]) == 1
    report = json.loads((tmp_path / "benchmarks" / "pretext_steps_cpu.json").read_text())  # the default --out
    assert report["hardneg"] == {"error": "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"}
    assert "i2p_mae" not in report and report["targets"] == []
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("CLIPAlign hardneg-i2i"))
    assert line.split() == ["CLIPAlign", "hardneg-i2i", "failed:", "OutOfMemoryError:", "CUDA", "out", "of",
                            "memory.", "Tried", "to", "allocate", "2.00", "GiB"]


def test_without_a_gpu_cuda_says_so_and_exits_0(tool, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "pretext_steps_cuda.json"
    assert tool.main(["--device", "cuda", "--out", str(out)]) == 0
    assert "no CUDA device is visible" in capsys.readouterr().out
    assert not out.exists()


@pytest.mark.parametrize("argv,named", [
    (["--sizes", "huge"], "--sizes"),
    (["--parts", "i2p_mae,dgcnn"], "--parts dgcnn"),
    (["--amp", "fp8"], "--amp 'fp8'"),
    (["--steps", "0"], "--steps is 0"),
    (["--warmup", "x"], "--warmup"),
    (["--device", "tpu"], "--device 'tpu'"),
    (["--tmp", "/no/such/folder"], "--tmp"),
    (["--table", "/no/such/report.json"], "--table"),
    (["--bogus"], "--bogus"),
])
def test_bad_options_are_one_sentence_with_status_2(tool, capsys, argv, named):
    assert tool.main(["--device", "cpu", *argv]) == 2
    message = one_sentence(capsys)
    assert named in message and message.endswith(".")


# ---- the step in tools/gpu_check.sh ----

STAND_IN = r"""#!/usr/bin/env bash
# python as tools/gpu_check.sh calls it, on a machine without a GPU: the CUDA probes say yes, the pre-training
# benchmark runs for real (tiny, on the CPU; its --table as is), benchmark_gpu.py --table prints the steps file,
# everything else (build, suite, other benchmarks) fails at once.
echo "$*" >>"$CALLS"
export PYTHONPATH="$REAL_REPO/third_party/pointnet2_ops:$REAL_REPO${PYTHONPATH:+:$PYTHONPATH}"
case "$1" in
  -c) [[ $2 == *get_device_capability* ]] && echo sm_00; exit 0 ;;
  tools/benchmark_pretext_steps.py)
    shift
    if [[ $1 == --table ]]; then exec "$REAL_PYTHON" "$REAL_REPO/tools/benchmark_pretext_steps.py" "$@"; fi
    exec "$REAL_PYTHON" "$REAL_REPO/tools/benchmark_pretext_steps.py" "$@" --device cpu --sizes tiny \
      --parts i2p_mae --steps 1 --warmup 0 --threads 1 ;;
  tools/benchmark_gpu.py) [[ $2 == --table ]] && { echo "GPU check stand-in"; cat "$5"; exit 0; } ;;
esac
exit 1
"""


@pytest.fixture
def gpu_check(tmp_path):
    """Run a copy of tools/gpu_check.sh in an empty repository folder with the stand-in Python; returns a function
    of extra environment variables giving ``(completed process, repository folder, the stand-in's calls)``."""
    if shutil.which("timeout") is None:
        pytest.skip("gpu_check.sh needs coreutils' timeout")
    repo = tmp_path / "repo"
    (repo / "tools").mkdir(parents=True)
    shutil.copy(REPO / "tools" / "gpu_check.sh", repo / "tools" / "gpu_check.sh")
    python = tmp_path / "python"
    python.write_text(STAND_IN)
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls.log"

    def run(**extra):
        env = {**os.environ, "PYTHON": str(python), "CALLS": str(calls), "REAL_PYTHON": sys.executable,
               "REAL_REPO": str(REPO), **extra}
        env.pop("GPU_CHECK_OUT", None)
        done = subprocess.run(["bash", str(repo / "tools" / "gpu_check.sh")], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=240)
        return done, repo, calls.read_text().splitlines()

    return run


def _steps(repo: Path) -> dict:
    rows = [line.split("\t") for line in (repo / "build" / "gpu_check" / "steps.tsv").read_text().splitlines()]
    return {row[0]: row[1:] for row in rows}


def test_gpu_check_runs_the_pretext_step_on_cuda_and_prints_its_table(gpu_check):
    done, repo, calls = gpu_check()
    assert done.returncode == 1, done.stderr  # the stand-in fails the other steps
    out = repo / "build" / "gpu_check"
    assert "tools/benchmark_pretext_steps.py --device cuda --out build/gpu_check/pretext_steps.json" in calls
    steps = _steps(repo)
    assert list(steps) == ["build", "tests", "benchmark", "amp", "encoders", "pretext"]
    assert steps["pretext"][0] == "ok" and steps["pretext"][2] == "benchmarks/pretext_steps_cuda.json"
    assert all(steps[name][0] == "FAILED" for name in ("build", "tests", "benchmark", "amp", "encoders"))
    stored = json.loads((repo / "benchmarks" / "pretext_steps_cuda.json").read_text())
    assert stored == json.loads((out / "pretext_steps.json").read_text())
    assert stored["i2p_mae"]["s_per_step"] > 0 and stored["settings"]["sizes"] == "tiny"
    table = (out / "table.txt").read_text()
    assert "pretext\tok" in table  # the steps table
    assert table.index("GPU check stand-in") < table.index("Pre-training steps on cpu")  # then the pretext table
    assert "I2P-MAE (ViT teacher)" in table and "I2P-MAE (ViT teacher)" in done.stdout


def test_gpu_check_cuts_the_pretext_step_off_at_its_limit(gpu_check):
    done, repo, _ = gpu_check(GPU_CHECK_PRETEXT_TIMEOUT="0.2")
    assert done.returncode == 1
    assert _steps(repo)["pretext"][0] == "FAILED"
    assert not (repo / "benchmarks" / "pretext_steps_cuda.json").exists()
    assert "Pre-training steps on" not in (repo / "build" / "gpu_check" / "table.txt").read_text()
