"""Benchmark the point transformer encoders: forward and training-step throughput, amp, peak memory, SDPA kernels.

Issue 11 §5's GPU check of ``PointViTEncoder`` (Point-BERT / Point-MAE) and ``PointM2AEEncoder`` (Point-M2AE),
each as the ``BaseCls`` of its ModelNet40 config (``cfgs/modelnet40/pointvit.yaml``, ``pointm2ae.yaml``), built
with ``plugin.engine.load_config`` and ``builders.build_model`` at the standard widths:

- forward: batch 128 x 1024 points, ``eval()`` under ``torch.no_grad()``;
- training step: batch 32 x 1024 points, forward, the config's loss, backward, the config's gradient-norm clip
  and its optimizer step (AdamW), every run from the same initial weights and a fresh optimizer;
- each with ``amp`` bf16 and off (``torch.autocast`` on the device; bf16 needs no gradient scaler);
- SDPA: the forward again, with the attention restricted to the fused kernels
  (``sdpa_kernel([FLASH_ATTENTION, EFFICIENT_ATTENTION])``) and to the math kernel (``[MATH]``), per amp setting.

timm's ``Attention`` calls ``F.scaled_dot_product_attention`` only when its ``fused_attn`` attribute is on
(``timm.layers.use_fused_attn()``, which ``TIMM_FUSED_ATTN=0`` turns off); the tool turns it on in every
attention module (the default state is recorded), so both SDPA cases run the same code and differ only in the
kernel that ``sdpa_kernel`` lets PyTorch pick. ``PointM2AEEncoder``'s local attention passes a boolean mask,
which the flash kernel does not take: its fused case runs the memory-efficient kernel.

Timing: per step, CUDA events on a GPU (read after one synchronize at the end of the run), ``perf_counter`` on
the CPU, after warm-up steps; reported: median step time (q1, q3) and instances/s = batch / median. Peak memory:
``torch.cuda.max_memory_allocated`` over warm-up and timed steps, reset before each run (CUDA only). The data are
seeded uniform clouds in [-1, 1]^3.

``--quick`` (the test's mode, CPU): batch 4, 256 points, 2 steps after 1 warm-up, tiny widths (``QUICK_OVERRIDES``).

Usage::

    python tools/benchmark_encoders.py --device cuda            # -> benchmarks/encoders_cuda.json
    .venv/bin/python tools/benchmark_encoders.py --quick         # -> benchmarks/encoders_cpu.json
    python tools/benchmark_encoders.py --table benchmarks/encoders_cuda.json   # the table of a report
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # for `plugin`
sys.path.insert(0, os.path.join(REPO, "tools"))  # for benchmark_train's machine description

from benchmark_train import cpu_model  # noqa: E402
from plugin.engine import builders, load_config  # noqa: E402
from plugin.engine.batch import prepare_batch  # noqa: E402
from plugin.io import save_json  # noqa: E402

ENCODERS = {  # encoder -> its ModelNet40 config
    "PointViTEncoder": os.path.join("cfgs", "modelnet40", "pointvit.yaml"),
    "PointM2AEEncoder": os.path.join("cfgs", "modelnet40", "pointm2ae.yaml"),
}
QUICK_OVERRIDES = {  # tiny widths for --quick (256 points), local attention masks kept
    "PointViTEncoder": ["model.encoder_args.embed_dim=48", "model.encoder_args.depth=2",
                        "model.encoder_args.num_heads=3", "model.encoder_args.num_groups=16",
                        "model.encoder_args.group_size=8"],
    "PointM2AEEncoder": ["model.encoder_args.num_tokens=[64,32,16]", "model.encoder_args.k_neighbors=[8,4,4]",
                         "model.encoder_args.dims=[16,32,64]", "model.encoder_args.depths=[1,1,1]",
                         "model.encoder_args.num_heads=4"],
}
SDPA_BACKENDS = {"fused": [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION],
                 "math": [SDPBackend.MATH]}
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}
Batch = dict[str, Any]


def build_encoder(name: str, overrides: Sequence[str], device: torch.device, seed: int):
    """The ``BaseCls`` of ``name``'s ModelNet40 config with ``overrides``, on ``device``.

    Returns:
        ``(cfg, model)``.
    """
    cfg = load_config(os.path.join(REPO, ENCODERS[name]), list(overrides))
    builders.seed_everything(seed)
    return cfg, builders.build_model(cfg).to(device)


def enable_fused_attention(model: torch.nn.Module) -> dict:
    """Turn ``fused_attn`` on in every timm attention module of ``model`` (so that it calls F.sdpa).

    Returns:
        How many modules there are and how many had it on before.
    """
    modules = [m for m in model.modules() if hasattr(m, "fused_attn")]
    before = sum(bool(m.fused_attn) for m in modules)
    for m in modules:
        m.fused_attn = True
    return {"modules": len(modules), "fused_before": before}


def synthetic_batch(batch: int, points: int, in_channels: int, num_classes: int, seed: int,
                    device: torch.device) -> Batch:
    """A seeded batch as the loader and ``prepare_batch`` give it: ``pos`` (B,N,3) in [-1,1], ``x`` (B,C,N), ``y``."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(batch, points, 3, generator=g) * 2 - 1
    data = {"pos": pos, "x": pos.clone(), "y": torch.randint(0, num_classes, (batch,), generator=g)}
    return prepare_batch(data, device, in_channels)


def autocast(device: torch.device, amp: str):
    """``torch.autocast`` to the dtype of ``amp`` on ``device``; a no-op for ``off``."""
    dtype = AMP_DTYPES[amp]
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


@contextlib.contextmanager
def peak_memory(device: torch.device, into: dict) -> Iterator[None]:
    """Store in ``into['peak_mib']`` the peak allocated memory (MiB) of the enclosed run (None off CUDA)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    yield
    into["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def time_steps(step: Callable[[], Any], steps: int, warmup: int, device: torch.device) -> list[float]:
    """Run ``step`` ``warmup`` times, then ``steps`` times timed; the step times in ms.

    CUDA events around each timed step on a GPU (read after one synchronize), ``perf_counter`` on the CPU.
    """
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        events = []
        for _ in range(steps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            events.append((start, end))
        torch.cuda.synchronize(device)
        return [start.elapsed_time(end) for start, end in events]
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def summary(times: Sequence[float], batch: int) -> dict:
    """Median, quartiles and instances/s of the step times ``times`` (ms) at ``batch`` clouds a step."""
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else [times[0]] * 3
    return {"batch": batch, "steps": len(times), "median_ms": median, "q1_ms": q1, "q3_ms": q3,
            "instances_per_s": batch / median * 1e3}


def measure_forward(model: torch.nn.Module, data: Batch, amp: str, steps: int, warmup: int,
                    backends: Optional[list] = None) -> dict:
    """Forward throughput of ``model`` on ``data`` (eval, no grad) with ``amp``, optionally within ``backends``."""
    device = data["pos"].device
    model.eval()
    kernels = sdpa_kernel(backends) if backends is not None else contextlib.nullcontext()

    def step():
        with torch.no_grad(), autocast(device, amp):
            return model(data)

    row: dict = {}
    with kernels, peak_memory(device, row):
        times = time_steps(step, steps, warmup, device)
    return {**summary(times, len(data["y"])), **row}


def measure_train(model: torch.nn.Module, cfg: Any, initial: dict, data: Batch, amp: str, steps: int,
                  warmup: int, seed: int) -> dict:
    """Training-step throughput of ``model`` from the weights ``initial`` with a fresh optimizer, with ``amp``.

    The step: zero grads, forward and the config's loss under autocast, backward, ``grad_norm_clip`` when the
    config sets it, optimizer step.
    """
    device = data["pos"].device
    model.load_state_dict(initial)
    model.train()
    criterion = builders.build_criterion(cfg).to(device)
    optimizer = builders.build_optimizer(cfg, model)
    clip = cfg.get("grad_norm_clip")
    losses = []
    torch.manual_seed(seed)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = criterion(model(data), data["y"])
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        losses.append(loss.detach())

    row: dict = {}
    with peak_memory(device, row):
        times = time_steps(step, steps, warmup, device)
    return {**summary(times, len(data["y"])), **row, "loss": float(losses[-1])}


def measure_sdpa(model: torch.nn.Module, data: Batch, amp: str, steps: int, warmup: int) -> dict:
    """The forward with the fused SDPA kernels and with the math kernel; a case that cannot run holds its error."""
    out = {}
    for case, backends in SDPA_BACKENDS.items():
        try:
            out[case] = measure_forward(model, data, amp, steps, warmup, backends)
        except RuntimeError as err:  # e.g. no fused kernel for this GPU, dtype or mask
            out[case] = {"error": str(err).splitlines()[0][:300]}
    fused, math = out["fused"].get("median_ms"), out["math"].get("median_ms")
    out["math_over_fused"] = math / fused if fused and math else None
    return out


def measure_encoder(name: str, args: argparse.Namespace, device: torch.device) -> dict:
    """Every figure of one encoder."""
    overrides = QUICK_OVERRIDES[name] if args.quick else []
    cfg, model = build_encoder(name, overrides, device, args.seed)
    attention = enable_fused_attention(model)
    in_channels = int((cfg.model.get("encoder_args") or {}).get("in_channels", 3))
    num_classes = int(cfg.num_classes)
    initial = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    row = {"encoder": name, "cfg": ENCODERS[name], "overrides": overrides,
           "params": sum(p.numel() for p in model.parameters()),
           "encoder_params": sum(p.numel() for p in model.encoder.parameters()),
           "attention": {**attention, "timm_use_fused_attn": _timm_fused_default()},
           "grad_norm_clip": cfg.get("grad_norm_clip"), "forward": {}, "sdpa": {}, "train": {}}
    fwd = synthetic_batch(args.batch, args.points, in_channels, num_classes, args.seed, device)
    for amp in args.amp:
        print(f"{name}: forward amp {amp} ...", file=sys.stderr, flush=True)
        row["forward"][amp] = measure_forward(model, fwd, amp, args.steps, args.warmup)
    for amp in args.amp:
        print(f"{name}: SDPA fused vs math, amp {amp} ...", file=sys.stderr, flush=True)
        row["sdpa"][amp] = measure_sdpa(model, fwd, amp, args.steps, args.warmup)
    del fwd
    train = synthetic_batch(args.train_batch, args.points, in_channels, num_classes, args.seed + 1, device)
    for amp in args.amp:
        print(f"{name}: training step amp {amp} ...", file=sys.stderr, flush=True)
        row["train"][amp] = measure_train(model, cfg, initial, train, amp, args.steps, args.warmup, args.seed)
    del model, train
    return row


def _timm_fused_default() -> Optional[bool]:
    """What ``timm.layers.use_fused_attn()`` says (None if this timm has no such function)."""
    try:
        from timm.layers import use_fused_attn
    except ImportError:
        return None
    return bool(use_fused_attn())


def _pair(values: Sequence[Optional[float]], fmt: str) -> str:
    """``a/b/...`` of ``values`` with ``fmt``, ``-`` for a missing one."""
    return "/".join("-" if v is None else format(v, fmt) for v in values)


def format_table(report: dict) -> str:
    """The figures as a plain-text table: one row per encoder, ``a/b`` cells in the order of the amp settings."""
    meta, s = report["meta"], report["settings"]
    amps = s["amp"]
    tag = "/".join(amps)
    lines = [f"Point transformer encoders on {meta['device']} ({meta['cpu']}, {meta['threads']} threads): forward "
             f"batch {s['batch']} x {s['points']} points (eval, no grad), training step batch {s['train_batch']} "
             f"(forward, loss, backward, AdamW); median of {s['steps']} steps after {s['warmup']} warm-up; "
             f"cells are amp {tag}"]
    header = (f"{'encoder':<18}{'params':>8}{'fwd inst/s':>18}{'train inst/s':>18}{'peak MiB fwd':>16}"
              f"{'peak MiB train':>16}")
    header += "".join(f"{'SDPA ' + amp + ' fused/math ms':>26}" for amp in amps)
    lines += [header, "-" * len(header)]
    for r in report["encoders"]:
        line = (f"{r['encoder']:<18}{r['params'] / 1e6:>7.2f}M"
                f"{_pair([r['forward'][a]['instances_per_s'] for a in amps], '.1f'):>18}"
                f"{_pair([r['train'][a]['instances_per_s'] for a in amps], '.1f'):>18}"
                f"{_pair([r['forward'][a]['peak_mib'] for a in amps], '.0f'):>16}"
                f"{_pair([r['train'][a]['peak_mib'] for a in amps], '.0f'):>16}")
        for amp in amps:
            sdpa = r["sdpa"][amp]
            cell = _pair([sdpa[c].get("median_ms") for c in SDPA_BACKENDS], ".2f")
            if sdpa["math_over_fused"]:
                cell += f" ({sdpa['math_over_fused']:.2f}x)"
            line += f"{cell:>26}"
        lines.append(line)
        errors = [f"{amp} {case}: {r['sdpa'][amp][case]['error']}" for amp in amps for case in SDPA_BACKENDS
                  if "error" in r["sdpa"][amp][case]]
        lines += [f"  SDPA {e}" for e in errors]
    lines.append("fused = sdpa_kernel([FLASH_ATTENTION, EFFICIENT_ATTENTION]), math = sdpa_kernel([MATH]); (Nx) = "
                 "math / fused; timm fused_attn on in every attention module")
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (default cuda)")
    parser.add_argument("--out", default=None, help="JSON output path (default benchmarks/encoders_<device>.json)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: batch 4, 256 points, 2 steps after 1 warm-up, tiny widths")
    parser.add_argument("--encoders", default=",".join(ENCODERS), help="comma-separated, from " + ", ".join(ENCODERS))
    parser.add_argument("--amp", default="bf16,off", help="comma-separated amp settings: bf16, fp16, off")
    parser.add_argument("--batch", type=int, default=None, help="forward batch (default 128)")
    parser.add_argument("--train-batch", type=int, default=None, help="training-step batch (default 32)")
    parser.add_argument("--points", type=int, default=None, help="points per cloud (default 1024)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (default 10)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; 1 on cpu)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch CPU threads (default: the cores this process may use)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", metavar="JSON", default=None, help="print the table of a report and exit")
    args = parser.parse_args(argv)
    quick = args.quick
    args.batch = args.batch or (4 if quick else 128)
    args.train_batch = args.train_batch or (4 if quick else 32)
    args.points = args.points or (256 if quick else 1024)
    args.steps = args.steps or (2 if quick else 10)
    if args.warmup is None:
        args.warmup = 1 if quick or not args.device.startswith("cuda") else 3
    args.amp = [a.strip() for a in args.amp.split(",") if a.strip()]
    args.encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    bad = [a for a in args.amp if a not in AMP_DTYPES] + [e for e in args.encoders if e not in ENCODERS]
    if bad or not args.amp or not args.encoders:
        parser.error(f"unknown or missing --amp / --encoders value(s) {bad}: amp from {', '.join(AMP_DTYPES)}, "
                     f"encoders from {', '.join(ENCODERS)}")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.table:
        with open(args.table) as fh:
            print(format_table(json.load(fh)))
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"benchmark_encoders: --device {args.device} but no CUDA device is visible; use --device cpu.")
        return 0
    out = args.out or os.path.join("benchmarks", f"encoders_{device.type}.json")
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    rows = [measure_encoder(name, args, device) for name in args.encoders]
    report = {"settings": {"batch": args.batch, "train_batch": args.train_batch, "points": args.points,
                           "steps": args.steps, "warmup": args.warmup, "amp": args.amp, "seed": args.seed,
                           "quick": args.quick, "encoders": args.encoders,
                           "sdpa_backends": {k: [b.name for b in v] for k, v in SDPA_BACKENDS.items()}},
              "encoders": rows,
              "meta": {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                       "cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)), "threads": torch.get_num_threads(),
                       "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
                       "float32_matmul_precision": torch.get_float32_matmul_precision(),
                       "load_avg_start": list(load_start), "load_avg_end": list(os.getloadavg()),
                       "timing": "CUDA events per step (cuda) or perf_counter (cpu), median after warm-up",
                       "when": time.strftime("%Y-%m-%d %H:%M:%S")}}
    save_json(report, out, config_key="--out")
    print(format_table(report))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
