"""``tools/benchmark_encoders.py --quick`` on the CPU: both encoders, every run, the JSON and the table."""
import json
import math

import pytest
import torch

from ..conftest import load_tool

AMPS = ("bf16", "off")


@pytest.fixture(scope="module")
def tool():
    return load_tool("benchmark_encoders")


def _figures(run: dict, batch: int) -> None:
    assert run["batch"] == batch and run["steps"] == 2
    for key in ("median_ms", "q1_ms", "q3_ms", "instances_per_s"):
        assert math.isfinite(run[key]) and run[key] > 0, key
    assert run["q1_ms"] <= run["median_ms"] <= run["q3_ms"]
    assert run["instances_per_s"] == pytest.approx(batch / run["median_ms"] * 1e3)
    assert run["peak_mib"] is None  # CUDA only


def test_quick_cpu_run_writes_every_figure(tool, tmp_path, capsys):
    out = tmp_path / "bench" / "encoders_cpu.json"
    assert tool.main(["--device", "cpu", "--quick", "--threads", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"settings", "encoders", "meta"}
    s = report["settings"]
    assert (s["batch"], s["train_batch"], s["points"], s["steps"], s["warmup"]) == (4, 4, 256, 2, 1)
    assert s["amp"] == list(AMPS) and s["quick"] and report["meta"]["device"] == "cpu"
    assert s["sdpa_backends"] == {"fused": ["FLASH_ATTENTION", "EFFICIENT_ATTENTION"], "math": ["MATH"]}

    rows = report["encoders"]
    assert [r["encoder"] for r in rows] == ["PointViTEncoder", "PointM2AEEncoder"]
    for r in rows:
        assert r["cfg"].startswith("cfgs/modelnet40/") and r["overrides"] == tool.QUICK_OVERRIDES[r["encoder"]]
        assert 0 < r["encoder_params"] < r["params"] < 1e6  # tiny widths, the head on top
        assert r["attention"]["modules"] > 0 and isinstance(r["attention"]["timm_use_fused_attn"], bool)
        assert set(r["forward"]) == set(r["train"]) == set(r["sdpa"]) == set(AMPS)
        for amp in AMPS:
            _figures(r["forward"][amp], 4)
            _figures(r["train"][amp], 4)
            assert math.isfinite(r["train"][amp]["loss"])
            sdpa = r["sdpa"][amp]
            for case in ("fused", "math"):
                assert "error" not in sdpa[case], sdpa[case]
                _figures(sdpa[case], 4)
            assert sdpa["math_over_fused"] == pytest.approx(sdpa["math"]["median_ms"] / sdpa["fused"]["median_ms"])

    table = capsys.readouterr().out
    assert "PointViTEncoder" in table and "PointM2AEEncoder" in table and "SDPA bf16 fused/math ms" in table
    assert tool.main(["--table", str(out)]) == 0  # the table of a stored report, as gpu_check.sh prints it
    assert capsys.readouterr().out.splitlines()[:4] == table.splitlines()[:4]


def test_the_math_case_runs_timm_attention_through_sdpa(tool, monkeypatch):
    _, model = tool.build_encoder("PointViTEncoder", tool.QUICK_OVERRIDES["PointViTEncoder"],
                                    torch.device("cpu"), seed=0)
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    state = tool.enable_fused_attention(model)
    assert state == {"modules": 2, "fused_before": 0}
    assert all(m.fused_attn for m in model.modules() if hasattr(m, "fused_attn"))
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    data = tool.synthetic_batch(2, 256, 3, 40, 0, torch.device("cpu"))
    model.eval()
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    with torch.no_grad(), tool.sdpa_kernel(tool.SDPA_BACKENDS["math"]):
        model(data)
    assert len(calls) == 2  # one per block


def test_bad_arguments_are_refused(tool, capsys):
    with pytest.raises(SystemExit):
        tool.parse_args(["--amp", "fp8"])
    assert "fp8" in capsys.readouterr().err
