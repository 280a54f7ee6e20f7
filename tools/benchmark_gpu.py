"""Benchmark the pointnet2_ops CUDA kernels against the pure-PyTorch reference on the same GPU.

Every op runs at the shapes of PointNeXt-S / DGCNN / CLIP2Point (``--quick``: small ones) as
the CUDA kernel (through :mod:`pointnet2_ops.ops`) and as :mod:`pointnet2_ops.reference` on the
same device (the cases are ``tools/benchmark_ops.py``'s, their inputs moved to the GPU);
``group_points`` is also timed against a bare ``torch.gather`` with a prepared int64 index.
Times are CUDA-event medians after warm-up: each sample times enough back-to-back calls to
last about 2 ms. Then model throughput with our ops and with the reference ops:
PointNeXt-S inference (batch 128 x 1024 points) and training (batch 32), DGCNN inference.
Prints a table, checks the targets (every kernel >= 1x its reference, knn and chamfer_distance
>= 3x, group_points >= 1.5x torch.gather) and writes JSON next to the CPU benchmark's.
Without a GPU it prints why and exits 0.

Usage::

    python tools/benchmark_gpu.py [--quick] [--no-models] [--out benchmarks/ops_cuda.json]
    python tools/benchmark_gpu.py --table benchmarks/ops_cuda.json [--steps FILE]   # print only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable

import torch

import pointnet2_ops
from pointnet2_ops import _native, ops, reference

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # for `plugin`
if os.path.join(REPO, "tools") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "tools"))  # for `benchmark_ops` when imported from elsewhere

from benchmark_ops import (Case, Inputs, ball_query_case, chamfer_case, fps_case, gather_cases,  # noqa: E402
                           group_cases, interpolate_cases, knn_case, to_device, write_report)

Timer = Callable[[Callable[[], object], int], float]
MIN_SAMPLE_MS = 2.0  # each timed sample repeats the call until it lasts about this long
SLOW_CALL_MS = 100.0  # calls slower than this get at most 3 samples
TARGET_DEFAULT = 1.0  # every kernel at least as fast as its reference on the same GPU
TARGETS = {"knn": 3.0, "chamfer_distance": 3.0}  # op -> minimum speedup over the reference
GATHER_TARGET = 1.5  # group_points vs a bare torch.gather


def _render_cases(clouds: int, n: int, size: int) -> list[Case]:
    """CLIP2Point depth maps: ``clouds`` point sets (clouds x views) in ``size`` x ``size`` images.

    Unlike ``tools/benchmark_ops.py``'s render rows these time the splatting ops alone on random pixels.
    """
    def make(g: torch.Generator) -> Inputs:
        col_row = torch.rand(clouds, n, 2, generator=g) * size
        depth = 1 + torch.rand(clouds, n, 1, generator=g)
        return {"pixels": torch.cat([col_row, depth], -1)}

    shape = f"{clouds} clouds x N={n} {size}x{size} R=1"
    return [Case(op, shape, make, lambda t, op=op: getattr(ops, op)(t["pixels"], size, size, 1),
                 lambda t, op=op: getattr(reference, op)(t["pixels"], size, size, 1))
            for op in ("rasterize_points", "splat_weighted_depth")]


def build_cases(quick: bool) -> list[Case]:
    """The issue's shapes (PointNeXt-S, DGCNN, CLIP2Point, I2P-MAE), or small ones with ``quick``."""
    if quick:
        return ([fps_case(2, 256, 64), knn_case(2, 256, 20), ball_query_case(2, 256, 64)]
                + gather_cases(2, 8, 256, 64) + group_cases(2, 8, 256, 64, 8) + interpolate_cases(2, 8, 256, 64)
                + _render_cases(4, 256, 32) + [chamfer_case(2 * 16, 8, 8, "patches"),
                                               chamfer_case(2, 256, 256, "clouds")])
    return ([fps_case(32, 1024, 512), fps_case(8, 24000, 6000), knn_case(32, 1024, 20), knn_case(128, 1024, 20),
             ball_query_case(32, 1024, 512)] + gather_cases(32, 64, 1024, 512) + group_cases(32, 64, 1024, 512, 32)
            + interpolate_cases(32, 128, 1024, 256) + _render_cases(320, 1024, 224)
            + [chamfer_case(64 * 256, 8, 8, "patches"), chamfer_case(32, 2048, 2048, "clouds")])


def cuda_time_ms(fn: Callable[[], object], repeat: int) -> float:
    """Median CUDA-event time of ``fn`` in ms, after three warm-up calls.

    Each of the ``repeat`` samples times back-to-back calls lasting about ``MIN_SAMPLE_MS``, so
    the Python launch overhead of one call overlaps the GPU work of the previous one.

    Args:
        fn: launches the work on the current stream.
        repeat: number of samples (at most 3 for calls slower than ``SLOW_CALL_MS``).
    """
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    once = max(start.elapsed_time(end), 1e-3)
    inner = max(1, min(200, int(MIN_SAMPLE_MS / once)))
    if once > SLOW_CALL_MS:  # e.g. the reference FPS loop: fewer samples keep the check short
        repeat = min(repeat, 3)
    samples = []
    for _ in range(repeat):
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / inner)
    return statistics.median(samples)


def wall_time_ms(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` in ms after one warm-up call (the CPU stand-in of :func:`cuda_time_ms`).

    Args:
        fn: the work.
        repeat: number of samples.
    """
    fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def measure_ops(cases: list[Case], device: str, timer: Timer, repeat: int) -> list[dict]:
    """Time every case's kernel and baselines on ``device``.

    Args:
        cases: from :func:`build_cases`.
        device: where the inputs live (``cuda``; ``cpu`` in tests).
        timer: :func:`cuda_time_ms` or :func:`wall_time_ms`.
        repeat: samples per measurement.

    Returns:
        One JSON-ready row per case: op, shape, kernel_ms, reference_ms, speedup and, for
        group_points, gather_ms and speedup_vs_gather.
    """
    rows = []
    for i, case in enumerate(cases, 1):
        print(f"[{i}/{len(cases)}] {case.name} {case.shape} ...", file=sys.stderr, flush=True)
        inputs = to_device(case.make(torch.Generator().manual_seed(0)), device)
        row = {"op": case.name, "shape": case.shape,
               "kernel_ms": timer(lambda: case.native(inputs), repeat),
               "reference_ms": timer(lambda: case.ref(inputs), repeat)}
        row["speedup"] = row["reference_ms"] / row["kernel_ms"]
        if case.gather is not None:
            row["gather_ms"] = timer(lambda: case.gather(inputs), repeat)
            row["speedup_vs_gather"] = row["gather_ms"] / row["kernel_ms"]
        rows.append(row)
    return rows


def _model_batch(batch: int, points: int, device: str) -> tuple[dict, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(batch, points, 3, generator=g).to(device)
    x = torch.cat([pos, pos[:, :, 1:2]], -1).transpose(1, 2).contiguous()  # xyz + height
    return {"pos": pos, "x": x}, torch.randint(0, 15, (batch,), generator=g).to(device)


def measure_models(device: str, timer: Timer, repeat: int, quick: bool) -> list[dict]:
    """Throughput of the published ScanObjectNN PointNeXt-S and DGCNN with our ops and the reference ops.

    Args:
        device: where the models run.
        timer: :func:`cuda_time_ms` or :func:`wall_time_ms`.
        repeat: samples per measurement.
        quick: batch 2 x 256 points instead of the issue's sizes.

    Returns:
        One JSON-ready row per (model, mode, ops): batch, points, ms per batch, instances_per_s.
    """
    import plugin  # noqa: F401  (binds OpenPoints' point ops to ours)
    from openpoints.models import build_model_from_cfg
    from plugin.engine import load_config

    points = 256 if quick else 1024
    runs = [("PointNeXt-S", "pointnext-s.yaml", "inference", 2 if quick else 128),
            ("PointNeXt-S", "pointnext-s.yaml", "training", 2 if quick else 32),
            ("DGCNN", "dgcnn.yaml", "inference", 2 if quick else 128)]
    rows = []
    for name, cfg_file, mode, batch in runs:
        torch.manual_seed(0)
        model = build_model_from_cfg(load_config(os.path.join(REPO, "cfgs", "scanobjectnn", cfg_file)).model).to(device)
        data, labels = _model_batch(batch, points, device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step() -> None:
            if mode == "inference":
                with torch.no_grad():
                    model(dict(data))
                return
            loss = torch.nn.functional.cross_entropy(model(dict(data)), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        model.train(mode == "training")
        for op_backend in ("native", "reference"):
            print(f"{name} {mode} batch {batch} ({op_backend} ops) ...", file=sys.stderr, flush=True)
            saved = _native._C
            if op_backend == "reference":
                _native._C = None  # ops.* dispatch to the reference
            try:
                ms = timer(step, repeat)
            finally:
                _native._C = saved
            rows.append({"model": name, "mode": mode, "ops": op_backend, "batch": batch, "points": points,
                         "ms": ms, "instances_per_s": batch / ms * 1e3})
    return rows


def check_targets(rows: list[dict]) -> list[str]:
    """One line per target, starting with PASS or MISS.

    Args:
        rows: from :func:`measure_ops`.
    """
    lines = []
    for row in rows:
        label = f"{row['op']} [{row['shape']}]"
        target = TARGETS.get(row["op"], TARGET_DEFAULT)
        ok = row["speedup"] >= target
        lines.append(f"{'PASS' if ok else 'MISS'} {label}: {row['speedup']:.2f}x reference (target >= {target:g}x)")
        if "speedup_vs_gather" in row:
            ok = row["speedup_vs_gather"] >= GATHER_TARGET
            lines.append(f"{'PASS' if ok else 'MISS'} {label}: {row['speedup_vs_gather']:.2f}x torch.gather "
                         f"(target >= {GATHER_TARGET:g}x)")
    return lines


def read_steps(path: str | None) -> list[list[str]]:
    """Rows ``step, status, seconds, detail`` of a tab-separated steps file (``tools/gpu_check.sh``).

    Args:
        path: the file, or None.
    """
    if not path or not os.path.exists(path):
        return []
    with open(path) as fh:
        return [line.rstrip("\n").split("\t", 3) for line in fh if line.strip()]


def format_table(report: dict | None, steps: list[list[str]]) -> str:
    """One plain-text table: the check's steps, then the op rows, the model rows and the targets.

    Args:
        report: the benchmark JSON (None if the benchmark did not run).
        steps: from :func:`read_steps`.
    """
    meta = (report or {}).get("meta", {})
    lines = [f"GPU check: {meta.get('device', 'no benchmark report')} | torch {meta.get('torch', torch.__version__)}"]
    if steps:
        lines += [f"{'step':<11}{'status':<8}{'seconds':>8}  detail"]
        lines += [f"{s[0]:<11}{s[1]:<8}{s[2]:>8}  {s[3] if len(s) > 3 else ''}" for s in steps]
        lines.append("")
    if report:
        header = f"{'op':<28}{'shape':<34}{'cuda ms':>9}{'ref ms':>10}{'speedup':>9}{'gather ms':>11}{'vs gather':>11}"
        lines += [header, "-" * len(header)]
        for r in report["ops"]:
            gather = f"{r['gather_ms']:>11.3f}{r['speedup_vs_gather']:>10.2f}x" if "gather_ms" in r else ""
            lines.append(f"{r['op']:<28}{r['shape']:<34}{r['kernel_ms']:>9.3f}{r['reference_ms']:>10.3f}"
                         f"{r['speedup']:>8.2f}x{gather}")
        if report.get("models"):
            lines += ["", f"{'model':<14}{'mode':<11}{'batch':>6}{'points':>7}{'ops':>11}{'ms':>10}{'inst/s':>10}"]
            lines += [f"{m['model']:<14}{m['mode']:<11}{m['batch']:>6}{m['points']:>7}{m['ops']:>11}"
                      f"{m['ms']:>10.2f}{m['instances_per_s']:>10.0f}" for m in report["models"]]
        lines += ["", "Targets:"] + report["targets"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/ops_cuda.json", help="JSON output path")
    parser.add_argument("--quick", action="store_true", help="small shapes, few repeats")
    parser.add_argument("--repeat", type=int, default=None, help="timed samples per measurement")
    parser.add_argument("--no-models", action="store_true", help="skip the model throughput rows")
    parser.add_argument("--table", metavar="JSON", help="only print the table of an existing report")
    parser.add_argument("--steps", metavar="FILE", help="with --table: tab-separated gpu_check.sh steps")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        report = None
        if os.path.exists(args.table):
            with open(args.table) as fh:
                report = json.load(fh)
        print(format_table(report, read_steps(args.steps)))
        return 0
    if not torch.cuda.is_available():
        print("benchmark_gpu: no CUDA device is visible; nothing to measure (run it on a machine with a GPU).")
        return 0
    if not pointnet2_ops.has_cuda_kernels():
        print("error: pointnet2_ops has no CUDA kernels; rebuild it on this machine (make install) first",
              file=sys.stderr)
        return 1
    repeat = args.repeat or (3 if args.quick else 10)
    rows = measure_ops(build_cases(args.quick), "cuda", cuda_time_ms, repeat)
    models = [] if args.no_models else measure_models("cuda", cuda_time_ms, max(1, repeat // 2), args.quick)
    report = {
        "meta": {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
                 "python": platform.python_version(), "quick": args.quick, "repeat": repeat,
                 "timing": f"CUDA events, median of {repeat} samples of back-to-back calls (>= {MIN_SAMPLE_MS} ms "
                           "each) after 3 warm-up calls",
                 "when": time.strftime("%Y-%m-%d %H:%M:%S")},
        "ops": rows,
        "models": models,
        "targets": check_targets(rows),
    }
    write_report(args.out, report)
    print(format_table(report, []))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
