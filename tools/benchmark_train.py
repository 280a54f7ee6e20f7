"""Benchmark the PointNeXt-S training step: the old per-batch loop against the shared ``TrainingLoop``.

The issue's speed check: the CPU training step of PointNeXt-S (batch 32, 1024 points), before and after
:mod:`plugin.engine.loop` replaced the supervised loop, measured in the same run; after must be within 5%.

- before: :func:`reference_train_epoch`, a frozen copy of ``TrainRunner.train_epoch`` at commit 13acf64
  (the old loop, tqdm bar with ``set_postfix`` and ``loss.item()`` included);
- after: :meth:`TrainingLoop.train_epoch` with the step of ``mode=train`` (``TrainRunner.step``), in full
  precision as the old loop.

The model, loss, optimizer and scheduler are built from ``cfgs/modelnet40/pointnext-s.yaml`` as the runner
builds them; the data are seeded synthetic batches in the dataset's layout. After warm-up steps the two
variants alternate over R rounds of K steps (the order swapped every round, so load drift hits both); in every
round both start from deep copies of the same model/optimizer state and the same RNG seed, so they do the same
work (their losses are compared). A step is timed with ``perf_counter`` from one batch request to the next: the
whole loop body, progress bar included. Reported per variant: median and IQR of the step times and the median
CPU time of the process (less disturbed by other processes on a shared machine); then the ratio after/before of
the medians (the verdict), the median of the per-round ratios and the CPU-time ratio.

With ``--amp`` (default ``bf16,off`` on ``--device cuda``, skipped on CPU unless given): one epoch of synthetic
batches through ``TrainingLoop`` per amp setting, in instances per second and peak allocated GPU memory.

Usage::

    .venv/bin/python tools/benchmark_train.py [--quick] [--out benchmarks/train_step.json] [--threads N]
    python tools/benchmark_train.py --device cuda [--amp bf16,off] [--epoch-steps 40]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import os
import platform
import statistics
import sys
import time
import types
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # for `plugin`

from plugin.engine import builders, load_config  # noqa: E402
from plugin.engine.batch import prepare_batch  # noqa: E402
from plugin.engine.loop import LoopSettings, Selection, TrainingLoop  # noqa: E402
from plugin.engine.modes.train import TrainRunner  # noqa: E402
from plugin.errors import BadInputError  # noqa: E402
from plugin.io import save_json  # noqa: E402

DEFAULT_CFG = os.path.join(REPO, "cfgs", "modelnet40", "pointnext-s.yaml")
TARGET_RATIO = 1.05  # after / before: the new loop's step at most 5% slower
VARIANTS = ("before", "after")
Batch = dict[str, torch.Tensor]


@dataclass
class Setup:
    """What both variants train: the run config, the built objects (the shared start state) and the device."""

    cfg: Any
    model: torch.nn.Module
    criterion: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    device: torch.device

    @property
    def in_channels(self) -> int:
        """The encoder's input channels, as ``Runner.in_channels`` reads them."""
        return int((self.cfg.model.get("encoder_args") or {}).get("in_channels", 3))

    def fork(self) -> "Setup":
        """A deep copy of the model, loss, optimizer and scheduler, still linked to each other."""
        model, criterion, optimizer, scheduler = copy.deepcopy(
            (self.model, self.criterion, self.optimizer, self.scheduler))
        return Setup(self.cfg, model, criterion, optimizer, scheduler, self.device)


def build_setup(cfg_path: str, device: torch.device, seed: int) -> Setup:
    """The model, loss, optimizer and scheduler of ``cfg_path``, built as ``TrainRunner`` builds them."""
    cfg = load_config(cfg_path)
    builders.seed_everything(seed)
    model = builders.build_model(cfg).to(device)
    criterion = builders.build_criterion(cfg).to(device)
    optimizer = builders.build_optimizer(cfg, model)
    scheduler = builders.build_scheduler(cfg, optimizer)
    scheduler.step(0)  # what the loop does before its first epoch
    return Setup(cfg, model, criterion, optimizer, scheduler, device)


def synthetic_batches(count: int, batch: int, points: int, in_channels: int, num_classes: int,
                      seed: int) -> list[Batch]:
    """``count`` collated batches as a loader gives them (on the CPU): ``pos`` (B,N,3) in [-1,1]; ``heights``
    (B,N,1) above the lowest point along y; ``x`` (B,N,C) xyz, heights, then noise up to ``in_channels``; ``y`` (B,).
    """
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        pos = torch.rand(batch, points, 3, generator=g) * 2 - 1
        heights = pos[:, :, 1:2] - pos[:, :, 1:2].min(dim=1, keepdim=True).values
        extra = torch.randn(batch, points, max(0, in_channels - 4), generator=g)
        x = torch.cat([pos, heights, extra], -1)[:, :, :max(in_channels, 3)]
        batches.append({"pos": pos, "heights": heights, "x": x,
                        "y": torch.randint(0, num_classes, (batch,), generator=g)})
    return batches


class StepClock:
    """The batches of an epoch that time each step: from one batch request to the next, the loop body included.

    ``seconds`` holds the wall times (``perf_counter``), ``cpu_seconds`` the CPU times of this process over all its
    threads (``process_time``), which other processes on the machine disturb less.

    Args:
        batches: what the epoch iterates over.
    """

    def __init__(self, batches: Sequence[Batch]):
        self.batches, self.seconds, self.cpu_seconds = batches, [], []

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Batch]:
        last, last_cpu = time.perf_counter(), time.process_time()
        for batch in self.batches:
            yield batch
            now, now_cpu = time.perf_counter(), time.process_time()  # the loop asks for the next batch: step done
            self.seconds.append(now - last)
            self.cpu_seconds.append(now_cpu - last_cpu)
            last, last_cpu = now, now_cpu


def reference_train_epoch(s: Setup, loader: StepClock, epoch: int) -> float:
    """REFERENCE OF THE OLD LOOP ("before"): ``TrainRunner.train_epoch`` of commit 13acf64, kept as it was.

    Returns the mean loss.
    """
    cfg = s.cfg
    s.model.train()
    losses, clip = [], cfg.get("grad_norm_clip")
    # plugin.engine.data.progress at 13acf64
    bar = tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", dynamic_ncols=True, leave=False, mininterval=1.0)
    for data in bar:
        data = prepare_batch(data, s.device, s.in_channels, cfg.get("num_points"), cfg.get("feature_keys"))
        loss = s.criterion(s.model(data), data["y"])
        if not torch.isfinite(loss):
            raise BadInputError(f"The training loss became {loss.item()} at epoch {epoch}: lower lr, "
                                f"set grad_norm_clip, or check the data for outliers.")
        s.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(s.model.parameters(), clip)
        s.optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses):.4f}", lr=f"{s.optimizer.param_groups[0]['lr']:.2e}")
    return float(np.mean(losses)) if losses else float("nan")


def make_loop(s: Setup, amp: str) -> TrainingLoop:
    """The shared loop as ``mode=train`` builds it ("after"), with ``amp`` and a no-op checkpoint writer.

    Its step is ``TrainRunner.step`` itself, bound to a stand-in with the attributes it reads.
    """
    runner = types.SimpleNamespace(cfg=s.cfg, device=s.device, in_channels=s.in_channels, model=s.model,
                                   net=s.model, criterion=s.criterion)  # net: the model, unwrapped in one process
    settings = dataclasses.replace(LoopSettings.from_cfg(s.cfg), amp=amp)
    return TrainingLoop(s.model, s.optimizer, s.scheduler, settings, s.device,
                        functools.partial(TrainRunner.step, runner), save=lambda name, epoch, state: None,
                        selection=Selection(None))


def run_variant(base: Setup, variant: str, batches: Sequence[Batch], seed: int) -> tuple[StepClock, float]:
    """One epoch of ``variant`` over ``batches`` from a copy of ``base`` and RNG ``seed``.

    Returns:
        The clock with the step times and the epoch's mean loss.
    """
    s = base.fork()
    loop = make_loop(s, "off") if variant == "after" else None  # full precision, as the old loop
    clock = StepClock(batches)
    torch.manual_seed(seed)
    if loop is None:
        loss = reference_train_epoch(s, clock, 1)
    else:
        loss = loop.train_epoch(clock, 1)["loss"]
    return clock, loss


def summary(seconds: Sequence[float], cpu_seconds: Sequence[float]) -> dict:
    """Median, quartiles, IQR and mean of the wall times of steps, and the median CPU time, in ms."""
    ms = [1e3 * v for v in seconds]
    q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive") if len(ms) > 1 else (ms[0],) * 3
    return {"steps": len(ms), "median_ms": statistics.median(ms), "q1_ms": q1, "q3_ms": q3, "iqr_ms": q3 - q1,
            "mean_ms": statistics.fmean(ms), "cpu_median_ms": 1e3 * statistics.median(cpu_seconds)}


def compare(base: Setup, batches: Sequence[Batch], rounds: int, steps: int, warmup: int, seed: int) -> dict:
    """The old step against the new loop (see the module docstring); ``base`` is advanced by the warm-up.

    Args:
        base: the shared start state.
        batches: at least ``max(steps, warmup)`` batches; every round runs the first ``steps``.
        rounds: rounds of one epoch per variant.
        steps: timed steps per epoch.
        warmup: untimed steps of each variant first (those of "before" advance ``base``, so the optimizer
            has its state, as mid-training).
        seed: the RNG seed of every epoch.
    """
    if warmup:
        torch.manual_seed(seed)
        reference_train_epoch(base, StepClock(batches[:warmup]), 0)
        run_variant(base, "after", batches[:warmup], seed)
    first = {v: run_variant(base, v, batches[:1], seed)[1] for v in VARIANTS}  # same state, batch and seed
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu_times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    per_round = []
    for r in range(rounds):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
        row: dict = {"round": r, "order": list(order), "load_avg_1min": os.getloadavg()[0]}
        for variant in order:
            clock, loss = run_variant(base, variant, batches[:steps], seed)
            times[variant] += clock.seconds
            cpu_times[variant] += clock.cpu_seconds
            row[f"{variant}_mean_ms"], row[f"{variant}_loss"] = 1e3 * statistics.fmean(clock.seconds), loss
        row["ratio"] = row["after_mean_ms"] / row["before_mean_ms"]
        per_round.append(row)
        print(f"round {r + 1}/{rounds}: before {row['before_mean_ms']:.1f} ms, after {row['after_mean_ms']:.1f} ms "
              f"per step (load {row['load_avg_1min']:.2f})", file=sys.stderr, flush=True)
    stats = {v: summary(times[v], cpu_times[v]) for v in VARIANTS}
    ratio = stats["after"]["median_ms"] / stats["before"]["median_ms"]
    return {"variants": stats, "ratio": ratio,
            "paired_ratio": statistics.median(row["ratio"] for row in per_round),
            "cpu_ratio": stats["after"]["cpu_median_ms"] / stats["before"]["cpu_median_ms"],
            "first_step_loss": first, "first_step_loss_diff": abs(first["after"] - first["before"]),
            "max_round_loss_diff": max(abs(row["after_loss"] - row["before_loss"]) for row in per_round),
            "rounds": per_round, "pass": ratio <= TARGET_RATIO}


def measure_amp(base: Setup, batches: Sequence[Batch], amps: Sequence[str], warmup: int, seed: int) -> list[dict]:
    """One epoch over ``batches`` through ``TrainingLoop`` per amp setting, each from a copy of ``base``.

    Returns:
        One row per setting: steps, instances/s, peak allocated memory (MiB, CUDA only), mean loss.
    """
    cuda = base.device.type == "cuda"
    rows = []
    for amp in amps:
        print(f"amp {amp}: {len(batches)} steps ...", file=sys.stderr, flush=True)
        s = base.fork()
        loop = make_loop(s, amp)
        torch.manual_seed(seed)
        if warmup:
            loop.train_epoch(batches[:warmup], 0)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        loss = loop.train_epoch(batches, 1)["loss"]
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        instances = sum(len(b["y"]) for b in batches)
        rows.append({"amp": amp, "dtype": str(loop.amp_dtype), "steps": len(batches), "seconds": seconds,
                     "instances_per_s": instances / seconds, "loss": loss,
                     "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None})
    reference = next((r for r in rows if r["amp"] == "off"), None)
    for row in rows:
        row["speedup_vs_off"] = row["instances_per_s"] / reference["instances_per_s"] if reference else None
    return rows


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform's processor string elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def format_table(report: dict) -> str:
    """The figures as a plain-text table."""
    meta, settings = report["meta"], report["settings"]
    lines = [f"PointNeXt-S training step, batch {settings['batch']} x {settings['points']} points on "
             f"{meta['device']} ({meta['cpu']}, {meta['threads']} threads, 1-min load {meta['load_avg_start'][0]:.2f} "
             f"at the start, {meta['load_avg_end'][0]:.2f} at the end)"]
    cmp = report.get("compare")
    if cmp:
        lines.append(f"{settings['rounds']} rounds x {settings['steps']} steps per variant, interleaved, after "
                     f"{settings['warmup']} warm-up step(s) each")
        header = (f"{'variant':<34}{'steps':>6}{'median ms':>11}{'q1 ms':>9}{'q3 ms':>9}{'IQR ms':>9}{'mean ms':>9}"
                  f"{'CPU ms':>9}")
        lines += [header, "-" * len(header)]
        labels = {"before": "before (old loop, 13acf64 ref.)", "after": "after (TrainingLoop)"}
        for variant in VARIANTS:
            v = cmp["variants"][variant]
            lines.append(f"{labels[variant]:<34}{v['steps']:>6}{v['median_ms']:>11.1f}{v['q1_ms']:>9.1f}"
                         f"{v['q3_ms']:>9.1f}{v['iqr_ms']:>9.1f}{v['mean_ms']:>9.1f}{v['cpu_median_ms']:>9.1f}")
        lines.append(f"{'PASS' if cmp['pass'] else 'MISS'} after/before median step time {cmp['ratio']:.3f} "
                     f"(target <= {TARGET_RATIO:.2f}); median of per-round ratios {cmp['paired_ratio']:.3f}; "
                     f"CPU-time ratio {cmp['cpu_ratio']:.3f}")
        lines.append(f"same work: first-step loss {cmp['first_step_loss']['before']:.6f} vs "
                     f"{cmp['first_step_loss']['after']:.6f}, max round loss diff {cmp['max_round_loss_diff']:.2e}")
    if report.get("amp"):
        header = f"{'amp':<8}{'dtype':<16}{'steps':>6}{'inst/s':>10}{'vs off':>8}{'peak MiB':>10}{'loss':>9}"
        lines += ["", header, "-" * len(header)]
        for r in report["amp"]:
            vs = "-" if r["speedup_vs_off"] is None else f"{r['speedup_vs_off']:.2f}x"
            peak = "-" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
            lines.append(f"{r['amp']:<8}{r['dtype']:<16}{r['steps']:>6}{r['instances_per_s']:>10.1f}{vs:>8}"
                         f"{peak:>10}{r['loss']:>9.4f}")
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/train_step.json", help="JSON output path")
    parser.add_argument("--cfg", default=DEFAULT_CFG, help="the experiment config of the model")
    parser.add_argument("--quick", action="store_true",
                        help="a short smoke run (batch 8, 256 points, 2 rounds x 2 steps)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch CPU threads (default: the cores this process may use)")
    parser.add_argument("--batch", type=int, default=None, help="clouds per batch (default 32)")
    parser.add_argument("--points", type=int, default=None, help="points per cloud (default 1024)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of before/after epochs (default 6)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per epoch (default 3)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps of each variant first (default 1; 3 on cuda)")
    parser.add_argument("--amp", default=None,
                        help="comma-separated amp settings to time one epoch each (default: bf16,off on cuda, none "
                        "on cpu)")
    parser.add_argument("--epoch-steps", type=int, default=None, help="steps of the amp epoch (default 40)")
    parser.add_argument("--no-compare", action="store_true", help="only the amp epochs")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    quick = args.quick
    batch, points = args.batch or (8 if quick else 32), args.points or (256 if quick else 1024)
    rounds, steps = args.rounds or (2 if quick else 6), args.steps or (2 if quick else 3)
    epoch_steps = args.epoch_steps or (4 if quick else 40)
    device = torch.device(args.device)
    warmup = (3 if device.type == "cuda" else 1) if args.warmup is None else args.warmup
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"benchmark_train: --device {args.device} but no CUDA device is visible; use --device cpu.")
        return 0
    amps = [a.strip() for a in (args.amp or ("bf16,off" if device.type == "cuda" else "")).split(",") if a.strip()]
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    base = build_setup(args.cfg, device, args.seed)
    make = functools.partial(synthetic_batches, batch=batch, points=points, in_channels=base.in_channels,
                             num_classes=int(base.cfg.num_classes), seed=args.seed)
    report: dict = {"settings": {"cfg": os.path.relpath(args.cfg, REPO), "batch": batch, "points": points,
                                 "rounds": rounds, "steps": steps, "warmup": warmup, "amp": amps,
                                 "epoch_steps": epoch_steps, "seed": args.seed, "quick": quick,
                                 "target_ratio": TARGET_RATIO}}
    if not args.no_compare:
        report["compare"] = compare(base, make(max(steps, warmup, 1)), rounds, steps, warmup, args.seed)
    if amps:
        report["amp"] = measure_amp(base, make(epoch_steps), amps, warmup, args.seed)
    report["meta"] = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                      "cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)), "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "python": platform.python_version(),
                      "load_avg_start": list(load_start), "load_avg_end": list(os.getloadavg()),
                      "timing": "perf_counter (wall) and process_time (CPU) from one batch request to the next "
                                "(the loop body, bar included)",
                      "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    save_json(report, args.out, config_key="--out")
    print(format_table(report))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
