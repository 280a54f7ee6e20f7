"""Benchmark the pointnet2_ops kernels against the pure-PyTorch reference (and fpsample).

Measures each op on CPU, the C++ kernel vs :mod:`pointnet2_ops.reference` at the same thread
count; FPS also against ``fpsample.fps_sampling`` per cloud at one thread each (fpsample is
single-threaded); CLIP2Point depth rendering (B=32 clouds x V=10 views of 1024 points at
224 x 224: ``rasterize_points`` for the min mode, ``splat_weighted_depth`` for the weighted one)
in clouds per second, plus :func:`plugin.render.render_depth` end to end; ``chamfer_distance`` at
I2P-MAE's shapes (64 x 256 patches of 8 points, and 32 clouds of 2048 points); and the CUDA
kernels when a GPU is present. Prints a table, checks the speed targets, and writes JSON.

Usage::

    .venv/bin/python tools/benchmark_ops.py [--quick] [--out benchmarks/ops.json] [--threads N]
        [--only render_depth,knn]   # only these ops; their rows are merged into --out
        [--only chamfer_distance]   # e.g. the Chamfer rows alone
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch

import pointnet2_ops
from pointnet2_ops import ops, reference

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for `plugin`

TARGET_REFERENCE_SPEEDUP = 5.0  # FPS and ball query: native >= 5x reference
TARGET_RENDER_SPEEDUP = 3.0  # depth rendering: native CPU kernels >= 3x the reference ops
TARGET_CHAMFER_SPEEDUP = 5.0  # chamfer_distance: native >= 5x reference
Inputs = dict[str, object]


@dataclass
class Case:
    """One benchmarked op at one shape.

    Args:
        name: op name (as in :mod:`pointnet2_ops.ops`).
        shape: human-readable shape description.
        make: builds the inputs (CPU tensors) from a seeded generator.
        native: runs the op through :mod:`pointnet2_ops.ops` (native kernels).
        ref: runs :mod:`pointnet2_ops.reference` on the same inputs.
        fps_cloud: for FPS, (points per cloud, samples) to compare with fpsample.
        clouds: clouds per call, to report clouds per second (depth rendering).
        end_to_end: the full pipeline around the op (native), timed as ``render_depth_ms``.
        gather: for group_points, the bare ``torch.gather`` doing the same work (timed by
            ``tools/benchmark_gpu.py``).
    """

    name: str
    shape: str
    make: Callable[[torch.Generator], Inputs]
    native: Callable[[Inputs], object]
    ref: Callable[[Inputs], object]
    fps_cloud: tuple[int, int] | None = None
    clouds: int | None = None
    end_to_end: Callable[[Inputs], object] | None = None
    gather: Callable[[Inputs], object] | None = None


# The case builders below are shared with tools/benchmark_gpu.py, which moves the inputs to the GPU.

def to_device(inputs: Inputs, device: str) -> Inputs:
    """``inputs`` with every tensor moved to ``device`` (other values unchanged)."""
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}


def fps_case(b: int, n: int, m: int) -> Case:
    """Furthest point sampling of ``m`` of ``n`` points in ``b`` clouds."""
    return Case(
        "furthest_point_sample", f"B={b} N={n}->{m}",
        lambda g: {"xyz": torch.rand(b, n, 3, generator=g)},
        lambda t: ops.furthest_point_sample(t["xyz"], m),
        lambda t: reference.furthest_point_sample(t["xyz"], m),
        fps_cloud=(n, m),
    )


def knn_case(b: int, n: int, k: int) -> Case:
    """The ``k`` nearest neighbours of every one of ``n`` points in ``b`` clouds (DGCNN)."""
    return Case(
        "knn", f"B={b} N={n} M={n} k={k}",
        lambda g: {"xyz": torch.rand(b, n, 3, generator=g)},
        lambda t: ops.knn(t["xyz"], t["xyz"], k),
        lambda t: reference.knn(t["xyz"], t["xyz"], k),
    )


def ball_query_case(b: int, n: int, m: int) -> Case:
    """Radius-0.15 ball query of 32 neighbours around the first ``m`` of ``n`` points."""
    def make(g: torch.Generator) -> Inputs:
        xyz = torch.rand(b, n, 3, generator=g)
        return {"xyz": xyz, "centres": xyz[:, :m].contiguous()}

    return Case(
        "ball_query", f"B={b} N={n} M={m} r=0.15 K=32", make,
        lambda t: ops.ball_query(0.15, 32, t["xyz"], t["centres"]),
        lambda t: reference.ball_query(0.15, 32, t["xyz"], t["centres"]),
    )


def gather_cases(b: int, c: int, n: int, m: int) -> list[Case]:
    """``gather_points`` of ``m`` of ``n`` points with ``c`` channels, and its backward."""
    def make(g: torch.Generator) -> Inputs:
        return {
            "features": torch.randn(b, c, n, generator=g),
            "idx": torch.randint(0, n, (b, m), generator=g, dtype=torch.int32),
            "grad": torch.randn(b, c, m, generator=g),
        }

    shape = f"B={b} C={c} N={n} M={m}"
    return [
        Case("gather_points", shape, make,
             lambda t: ops.gather_points(t["features"], t["idx"]),
             lambda t: reference.gather_points(t["features"], t["idx"])),
        Case("gather_points_backward", shape, make,
             lambda t: ops.gather_points_backward(t["grad"], t["idx"], n),
             lambda t: reference.gather_points_backward(t["grad"], t["idx"], n)),
    ]


def group_cases(b: int, c: int, n: int, m: int, k: int) -> list[Case]:
    """``group_points`` of ``k`` neighbours around ``m`` of ``n`` points with ``c`` channels, and its backward."""
    def make(g: torch.Generator) -> Inputs:
        features = torch.randn(b, c, n, generator=g)
        idx = torch.randint(0, n, (b, m, k), generator=g, dtype=torch.int32)
        return {
            "features": features, "idx": idx, "grad": torch.randn(b, c, m, k, generator=g),
            "gather_idx": idx.reshape(b, 1, m * k).long().expand(b, c, m * k),  # prepared for torch.gather
        }

    shape = f"B={b} C={c} N={n} M={m} K={k}"
    return [
        Case("group_points", shape, make,
             lambda t: ops.group_points(t["features"], t["idx"]),
             lambda t: reference.group_points(t["features"], t["idx"]),
             gather=lambda t: t["features"].gather(2, t["gather_idx"])),
        Case("group_points_backward", shape, make,
             lambda t: ops.group_points_backward(t["grad"], t["idx"], n),
             lambda t: reference.group_points_backward(t["grad"], t["idx"], n)),
    ]


def interpolate_cases(b: int, c: int, n: int, m: int) -> list[Case]:
    """``three_nn`` of ``n`` points among ``m``; ``three_interpolate`` of ``c`` channels, and its backward."""
    def make(g: torch.Generator) -> Inputs:
        unknown, known = torch.rand(b, n, 3, generator=g), torch.rand(b, m, 3, generator=g)
        dist2, idx = reference.three_nn(unknown, known)
        weight = 1.0 / (dist2 + 1e-8)
        return {
            "unknown": unknown, "known": known, "idx": idx,
            "weight": (weight / weight.sum(-1, keepdim=True)).contiguous(),
            "features": torch.randn(b, c, m, generator=g),
            "grad": torch.randn(b, c, n, generator=g),
        }

    shape = f"B={b} C={c} n={n}<-m={m}"
    return [
        Case("three_nn", f"B={b} n={n}<-m={m}", make,
             lambda t: ops.three_nn(t["unknown"], t["known"]),
             lambda t: reference.three_nn(t["unknown"], t["known"])),
        Case("three_interpolate", shape, make,
             lambda t: ops.three_interpolate(t["features"], t["idx"], t["weight"]),
             lambda t: reference.three_interpolate(t["features"], t["idx"], t["weight"])),
        Case("three_interpolate_backward", shape, make,
             lambda t: ops.three_interpolate_backward(t["grad"], t["idx"], t["weight"], m),
             lambda t: reference.three_interpolate_backward(t["grad"], t["idx"], t["weight"], m)),
    ]


def chamfer_case(b: int, n: int, m: int, label: str) -> Case:
    """Chamfer nearest neighbours both ways between ``b`` pairs of clouds of ``n`` and ``m`` points."""
    return Case(
        "chamfer_distance", f"{label} B={b} N={n} M={m}",
        lambda g: {"a": torch.rand(b, n, 3, generator=g), "b": torch.rand(b, m, 3, generator=g)},
        lambda t: ops.chamfer_distance(t["a"], t["b"]),
        lambda t: reference.chamfer_distance(t["a"], t["b"]),
    )


def _render_cases(b: int, v: int = 10, n: int = 1024, size: int = 224) -> list[Case]:
    """CLIP2Point depth rendering of B clouds x V views: the splatting kernels vs the reference.

    The cameras' pixel coordinates are computed once (:func:`project_to_pixels`), so the rows
    compare the ops alone; ``render_depth_ms`` adds the end-to-end time with the projection.
    """
    from plugin.render.depth_renderer import project_to_pixels, render_depth
    from plugin.render.view_sets import orthogonal_and_corner_views

    view, proj = orthogonal_and_corner_views()
    view, proj = view[:v].contiguous(), proj[:v].contiguous()

    def make(g: torch.Generator) -> Inputs:
        points = torch.rand(b, n, 3, generator=g) * 2 - 1
        pixels = project_to_pixels(points, view, proj, size).reshape(b * v, n, 3).contiguous()
        return {"points": points, "view": view, "proj": proj, "pixels": pixels}

    modes = {"min": "rasterize_points", "weighted": "splat_weighted_depth"}
    return [
        Case(f"render_depth[{mode}]", f"B={b} V={v} N={n} {size}x{size} R=1", make,
             lambda t, op=op: getattr(ops, op)(t["pixels"], size, size, 1),
             lambda t, op=op: getattr(reference, op)(t["pixels"], size, size, 1),
             clouds=b,
             end_to_end=lambda t, mode=mode: render_depth(t["points"], t["view"], t["proj"], size, 1, mode))
        for mode, op in modes.items()
    ]


def build_cases(quick: bool) -> list[Case]:
    """The benchmarked cases: PointNeXt-S shapes, or small ones with ``quick``."""
    b = 4 if quick else 32
    fps = [fps_case(b, 1024, 512)] + ([] if quick else [fps_case(8, 24000, 6000)])
    gather = gather_cases(b, 64, 1024, 512)[:1]  # gather_points only: its backward is timed on the GPU alone
    # (C, N, M): PointNeXt-S set-abstraction stages at K = 32 neighbours.
    group_shapes = [(64, 1024, 512), (128, 512, 128), (512, 128, 32)]
    if quick:
        group_shapes = group_shapes[:1]
    groups = [c for ch, n, m in group_shapes for c in group_cases(b, ch, n, m, 32)]
    renders = _render_cases(b)
    # I2P-MAE: 64 clouds x 256 patches of 8 points, and whole clouds of 2048 points.
    chamfer = [chamfer_case((4 if quick else 64) * 256, 8, 8, "patches"),
               chamfer_case(b, 1024 if quick else 2048, 1024 if quick else 2048, "clouds")]
    return (fps + [ball_query_case(b, 1024, 512), knn_case(b, 1024, 20)] + gather + groups
            + interpolate_cases(b, 128, 512, 128) + renders + chamfer)


MIN_TIMED_S = 0.5  # keep sampling fast ops for at least this long (thread pools warm up)
MAX_SAMPLES = 200


def _time(fn: Callable[[], object], repeat: int, sync: Callable[[], None] = lambda: None) -> float:
    """Median wall time of ``fn`` in ms over at least ``repeat`` runs, after a warm-up call."""
    fn()
    sync()
    samples: list[float] = []

    def done() -> bool:
        long_enough = sum(samples) >= MIN_TIMED_S * 1e3 or len(samples) >= MAX_SAMPLES
        return len(samples) >= repeat and long_enough

    while not done():
        start = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def _time_fpsample(inputs: Inputs, m: int, repeat: int) -> float | None:
    """fpsample.fps_sampling per cloud (ms), starting at index 0 like our FPS; None if absent."""
    try:
        import fpsample
    except ImportError:
        return None
    clouds = [cloud.numpy() for cloud in inputs["xyz"]]  # type: ignore[union-attr]
    total = _time(lambda: [fpsample.fps_sampling(c, m, start_idx=0) for c in clouds], repeat)
    return total / len(clouds)


def run_case(case: Case, threads: int, repeat: int, use_cuda: bool) -> dict:
    """Time one case; returns a JSON-ready row."""
    inputs = case.make(torch.Generator().manual_seed(0))
    slow_repeat = max(1, repeat // 3) if case.fps_cloud and case.fps_cloud[0] > 5000 else repeat
    row: dict = {"op": case.name, "shape": case.shape, "load_avg_1min": os.getloadavg()[0]}
    torch.set_num_threads(1)
    row["native_1thread_ms"] = _time(lambda: case.native(inputs), slow_repeat)
    torch.set_num_threads(threads)
    row["native_ms"] = _time(lambda: case.native(inputs), slow_repeat)
    row["thread_scaling"] = row["native_1thread_ms"] / row["native_ms"]
    row["reference_ms"] = _time(lambda: case.ref(inputs), slow_repeat)
    row["speedup"] = row["reference_ms"] / row["native_ms"]
    if case.fps_cloud:
        batch = len(inputs["xyz"])  # type: ignore[arg-type]
        row["native_1thread_per_cloud_ms"] = row["native_1thread_ms"] / batch
        row["fpsample_per_cloud_ms"] = _time_fpsample(inputs, case.fps_cloud[1], slow_repeat)
        if row["fpsample_per_cloud_ms"]:
            row["vs_fpsample"] = row["fpsample_per_cloud_ms"] / row["native_1thread_per_cloud_ms"]
    if use_cuda:
        gpu = to_device(inputs, "cuda")
        row["cuda_ms"] = _time(lambda: case.native(gpu), repeat, torch.cuda.synchronize)
    if case.end_to_end:
        row["render_depth_ms"] = _time(lambda: case.end_to_end(inputs), slow_repeat)
    if case.clouds:
        for key in ("native", "reference", "cuda", "render_depth"):
            if f"{key}_ms" in row:
                row[f"{key}_clouds_per_s"] = case.clouds / row[f"{key}_ms"] * 1e3
    return row


TARGET_STEP_SHARE = 0.15  # the ops take under 15% of a PointNeXt-S training step on CPU
TIMED_OPS = ("furthest_point_sample", "gather_points", "gather_points_backward", "ball_query", "group_points",
             "group_points_backward", "three_nn", "three_interpolate", "three_interpolate_backward", "knn")


def measure_pointnext_s_step_share(args: argparse.Namespace) -> dict:
    """Share of a PointNeXt-S training step (CPU, 1024 points) spent inside the point ops.

    Builds the unmodified published ``cfgs/scanobjectnn/pointnext-s.yaml`` model through
    ``import plugin`` (OpenPoints' op classes rebound to ours), wraps every function of
    :mod:`pointnet2_ops.ops` with a timer, and times full steps (forward, loss, backward, AdamW).

    Args:
        args: the parsed command-line arguments (``--quick`` uses batch 8 and one timed step).

    Returns:
        ``{"batch", "points", "step_ms", "ops_ms", "share", "per_op_ms"}`` (times per step).
    """
    import plugin  # noqa: F401  (rebinds OpenPoints' op classes)
    from openpoints.models import build_model_from_cfg
    from plugin.engine import load_config

    torch.manual_seed(0)
    cfg = load_config(os.path.join(os.path.dirname(__file__), "..", "cfgs", "scanobjectnn", "pointnext-s.yaml"))
    model = build_model_from_cfg(cfg.model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch, points, steps = (8, 1024, 1) if args.quick else (32, 1024, 3)
    pos = torch.rand(batch, points, 3)
    data = {"pos": pos, "x": torch.cat([pos, pos[:, :, 1:2]], -1).transpose(1, 2).contiguous()}
    labels = torch.randint(0, 15, (batch,))
    spent = dict.fromkeys(TIMED_OPS, 0.0)
    originals = {name: getattr(ops, name) for name in TIMED_OPS}

    def timed(name: str, fn: Callable) -> Callable:
        def wrapper(*a, **kw):
            start = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] += time.perf_counter() - start
        return wrapper

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(dict(data)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    print(f"PointNeXt-S training steps (batch {batch}) ...", file=sys.stderr, flush=True)
    step()  # warm-up
    try:
        for name, fn in originals.items():
            setattr(ops, name, timed(name, fn))
        start = time.perf_counter()
        for _ in range(steps):
            step()
        step_s = (time.perf_counter() - start) / steps
    finally:
        for name, fn in originals.items():
            setattr(ops, name, fn)
    ops_s = sum(spent.values()) / steps
    return {"batch": batch, "points": points, "threads": torch.get_num_threads(), "step_ms": 1e3 * step_s,
            "ops_ms": 1e3 * ops_s, "share": ops_s / step_s,
            "per_op_ms": {k: 1e3 * v / steps for k, v in spent.items() if v > 0}}


def write_report(path: str, report: dict) -> None:
    """Write ``report`` as indented JSON, creating the folder.

    Args:
        path: output file.
        report: JSON-ready dict.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(report, fh, indent=2)


def check_targets(rows: list[dict]) -> list[str]:
    """One line per speed target, starting with PASS or MISS."""
    lines = []
    for row in rows:
        label = f"{row['op']} [{row['shape']}]"
        if row["op"] in ("furthest_point_sample", "ball_query"):
            ok = row["speedup"] >= TARGET_REFERENCE_SPEEDUP
            lines.append(f"{'PASS' if ok else 'MISS'} {label}: {row['speedup']:.1f}x reference "
                         f"(target >= {TARGET_REFERENCE_SPEEDUP:.0f}x)")
        if row["op"] == "chamfer_distance":
            ok = row["speedup"] >= TARGET_CHAMFER_SPEEDUP
            lines.append(f"{'PASS' if ok else 'MISS'} {label}: {row['speedup']:.1f}x reference "
                         f"(target >= {TARGET_CHAMFER_SPEEDUP:.0f}x)")
        if row["op"].startswith("render_depth"):
            ok = row["speedup"] >= TARGET_RENDER_SPEEDUP
            lines.append(f"{'PASS' if ok else 'MISS'} {label}: {row['speedup']:.1f}x reference "
                         f"({row['native_clouds_per_s']:.0f} vs {row['reference_clouds_per_s']:.0f} "
                         f"clouds/s; target >= {TARGET_RENDER_SPEEDUP:.0f}x)")
        if row.get("vs_fpsample") is not None:
            ok = row["vs_fpsample"] >= 1.0
            lines.append(f"{'PASS' if ok else 'MISS'} {label}: {row['vs_fpsample']:.1f}x faster "
                         "than fpsample per cloud at 1 thread each (target >= 1x)")
    return lines


def format_table(rows: list[dict], threads: int) -> str:
    """The results as a plain-text table."""
    def opt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    header = (f"{'op':<28}{'shape':<36}{'native ms':>10}{'1-thr ms':>10}{'scale':>7}"
              f"{'ref ms':>10}{'speedup':>9}{'fpsample/cloud':>16}{'native/cloud':>14}"
              f"{'cuda ms':>9}")
    lines = [
        f"CPU threads: {threads} for native ('native ms') and reference ('ref ms'); "
        "'1-thr ms': native on 1 thread, 'scale' = 1-thr / native. "
        "FPS vs fpsample: ms per cloud, 1 thread each.",
        header,
        "-" * len(header),
    ]
    for r in rows:
        lines.append(
            f"{r['op']:<28}{r['shape']:<36}{r['native_ms']:>10.2f}{r['native_1thread_ms']:>10.2f}"
            f"{r['thread_scaling']:>6.2f}x{r['reference_ms']:>10.2f}{r['speedup']:>8.1f}x"
            f"{opt(r.get('fpsample_per_cloud_ms')):>16}"
            f"{opt(r.get('native_1thread_per_cloud_ms')):>14}{opt(r.get('cuda_ms')):>9}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/ops.json", help="JSON output path")
    parser.add_argument("--quick", action="store_true", help="small shapes, few repeats")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="CPU threads for native and reference (default: torch's)")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per measurement")
    parser.add_argument("--only", default=None,
                        help="comma-separated ops to run (e.g. render_depth,knn; a prefix matches); "
                        "their rows replace those in --out and the PointNeXt-S step share is skipped")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if pointnet2_ops.backend() != "native":
        print("error: native ops are not built; run `make install` first", file=sys.stderr)
        return 1
    repeat = args.repeat or (1 if args.quick else 5)
    use_cuda = torch.cuda.is_available() and pointnet2_ops.has_cuda_kernels()
    cases = build_cases(args.quick)
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        cases = [c for c in cases if any(c.name.startswith(w) for w in wanted)]
        if not cases:
            print(f"error: --only {args.only!r} matches no op", file=sys.stderr)
            return 2
    rows = []
    for i, case in enumerate(cases, 1):
        print(f"[{i}/{len(cases)}] {case.name} {case.shape} ...", file=sys.stderr, flush=True)
        rows.append(run_case(case, args.threads, repeat, use_cuda))
    print(format_table(rows, args.threads))
    if args.only:
        return _merge_report(args, rows)
    targets = check_targets(rows)
    print("\n".join(["", "Targets:"] + targets))
    report = {
        "meta": {
            "threads": args.threads, "quick": args.quick, "repeat": repeat,
            "torch": torch.__version__, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "cuda_device": torch.cuda.get_device_name() if use_cuda else None,
        },
        "results": rows,
        "targets": targets,
    }
    share = measure_pointnext_s_step_share(args)
    ok = share["share"] < TARGET_STEP_SHARE
    line = (f"{'PASS' if ok else 'MISS'} point ops in a PointNeXt-S training step (batch {share['batch']}, "
            f"{share['points']} points): {share['ops_ms']:.0f} of {share['step_ms']:.0f} ms = "
            f"{100 * share['share']:.1f}% (target < {100 * TARGET_STEP_SHARE:.0f}%)")
    print(line)
    report["targets"].append(line)
    report["pointnext_s_step_share"] = share
    write_report(args.out, report)
    print(f"\nwrote {args.out}")
    return 0


def _merge_report(args: argparse.Namespace, rows: list[dict]) -> int:
    """Replace (op, shape) rows of the JSON at ``args.out`` with ``rows``; recheck the targets."""
    report: dict = {"meta": {}, "results": [], "targets": []}
    if os.path.exists(args.out):
        with open(args.out) as fh:
            report = json.load(fh)
    fresh = {(r["op"], r["shape"]): r for r in rows}
    merged = [fresh.pop((r["op"], r["shape"]), r) for r in report["results"]]
    merged += list(fresh.values())
    step_lines = [t for t in report["targets"] if "PointNeXt-S training step" in t]
    report["results"], report["targets"] = merged, check_targets(merged) + step_lines
    report["meta"].setdefault("partial_runs", []).append({
        "ops": args.only, "threads": args.threads, "quick": args.quick,
        "repeat": args.repeat or (1 if args.quick else 5), "torch": torch.__version__,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"), "load_avg_1min": os.getloadavg()[0],
    })
    print("\n".join(["", "Targets:"] + check_targets(rows)))
    write_report(args.out, report)
    print(f"\nwrote {args.out} (merged {len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
