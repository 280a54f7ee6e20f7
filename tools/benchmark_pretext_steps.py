"""Benchmark the pre-training steps of I2P-MAE, of CLIPAlign with hard negatives and of Cross-MoST's self-training,
and the similarity precompute.

The GPU measurements of issues 12, 13 and 14 §6, in one run (``tools/gpu_check.sh`` runs it on CUDA):

- ``i2p_mae`` (issue 12): the pre-training step of ``I2PMAE`` built from ``cfgs/shapenet/i2p_mae.yaml`` (Point-M2AE
  512/256/64 tokens, widths 96/192/384, 5 blocks per stage) at batch 64 x 2048 points, with its CLIP ViT-B/16 teacher
  at random weights (``model.teacher.pretrained=none``; the teacher's cost does not depend on its weights). Reported:
  s/step, the teacher's share of the step (``I2PMAE.teach``: the three orthographic renders, the frozen ViT and the
  reading of its maps; the ViT's forward alone too) and the peak allocated memory. Paper: about 1.19 s/step and
  22.4 GB on an RTX 3090; target <= 0.3 s/step and <= 22 GB (GB = 1e9 bytes of ``torch.cuda.max_memory_allocated``,
  model, AdamW state and activations included).
- ``hardneg`` (issue 13): the training step of ``CLIPAlign`` (PointNeXt-S of ``cfgs/_blocks/pointnext_s.yaml``,
  objective ``hardneg``, kind ``i2i``, alpha 0.25, AdamW of ``cfgs/shapenet/hardneg-i2i.yaml``) at batch 256 x 1024
  points with precomputed, L2-normalised 512-d image embeddings (``img_emb``, as the similarity store gives them, so
  no image tower runs) and ``sim_category``/``sim_row`` rows of a synthetic similarity store (55 categories x 256
  objects, I2I-like matrices) written to a temporary folder and read through ``model.similarity``, so W (Eq. 6) is
  built every step as in training. Reported: steps/s,
  instances/s, the share of building W (:func:`global_negative_weights`: a CPU loop over the batch's categories)
  and the peak allocated memory.
- ``cross_most`` (issue 14): the self-training step of ``CrossMoST`` built from ``cfgs/modelnet40/cross_most.yaml``
  (image tower OpenCLIP ViT-B/16 at random weights, ``model.image_encoder.pretrained=none``, its classifier Q from the
  random CLIP's text tower; Point-BERT of ``cfgs/_blocks/point_bert_ulip.yaml``, 384-d x 12 blocks, 64 groups x 32
  points; joint pseudo-labels, alignment, fairness, MIM and MPM) with 40 class names ``c0``..``c39`` and
  ``model.threshold=0.0``, so that the cross-entropy covers the whole batch, at batch 128 pairs of 224 px images
  (``img_weak``, ``img_strong``, uniform in [0, 1]) and 1024-point clouds (``pos_weak``, ``pos_strong``). The
  optimizer is ``build_grouped_optimizer`` (AdamW, layer-wise lr decay groups) with the runner's lr (2e-5 x 128 / 256);
  the teacher is the config's ``ema`` block (``ModelEma``, momentum 0.99 -> 0.9998 over 400 updates), passed to the
  forward and updated after every optimizer step as ``EmaHook`` does. Reported: s/step (median, q1, q3),
  instances/s, the teacher's share (its two forward passes on the weak pair inside ``CrossMoST.forward``, the image
  tower's and ``point_features``, summed and each alone; its logits and the pseudo-labels, both small, are left
  out), the EMA update's share and the peak allocated memory. No target (the issue asks for the figures only).
- ``precompute`` (issue 13): ``tools/precompute_similarity.py --kinds i2i --device <device>`` with a ViT-B-32 of
  random weights (``--encoder NAME=clip name=ViT-B-32 pretrained=none``) on a synthetic ``RenderedViews`` folder the
  script writes into a temporary folder (256 objects of 4 categories x 20 views, the default view set of
  ``tools/render_views.py``, 224 px PNGs of a shaded ellipse on white), after a warm-up run on 8 of them. Reported:
  the tool's own ``throughput.json`` (embedding objects/s: PNG decoding in ``--workers`` processes and the image
  tower; similarity objects/s), images/s and the wall time of the whole command.

A step is what ``plugin.engine.loop.TrainingLoop`` does per batch: zero the gradients, forward and loss under
autocast (the loop's :func:`resolve_amp`: bf16 on CUDA by default, off on the CPU), backward (through a gradient
scaler for fp16 only), the config's gradient-norm clip when it sets one, AdamW step (and for Cross-MoST then the
teacher's EMA update). The batch is one seeded synthetic batch on the device (uniform clouds in [-1, 1]^3), so data
loading is not in the step. Timing: after ``--warmup`` steps, each of ``--steps`` steps by ``perf_counter`` between two
``torch.cuda.synchronize`` calls (s/step: the median; q1, q3 too); the parts inside a step (teacher, W, EMA update) by
CUDA events around the call (read after the last synchronize) on a GPU, by ``perf_counter`` on the CPU; a part's
share = its summed time / the summed step times. Peak memory: ``torch.cuda.max_memory_allocated`` (and
``..._reserved``) over warm-up and timed steps, reset after the model and optimizer (and the EMA teacher) are built (so
their memory counts); None off CUDA. The JSON is rewritten after each part, so a run cut off by a time limit keeps the
finished parts; a part that fails (e.g. out of memory) records its error, the others still run and the exit status
is 1.

``--sizes tiny`` (the tests' mode, CPU, seconds): tiny Point-M2AE and the tiny test CLIP (``tiny-clip-test``) as
I2P-MAE teacher (batch 2 x 256 points), PointNeXt-S at batch 8 x 256 points with 32-d embeddings and a 3 x 8
store, Cross-MoST with the tiny CLIP and a one-block PointViTEncoder of 32-d tokens (8 groups x 8 points) at batch 4
pairs of 32 px images and 128 points, 8 classes, the precompute of 4 objects x 2 views of 32 px with the tiny CLIP;
2 steps after 1 warm-up.

Usage::

    python tools/benchmark_pretext_steps.py --device cuda        # -> benchmarks/pretext_steps_cuda.json
    python tools/benchmark_pretext_steps.py --device cpu --sizes tiny --out /tmp/pretext_steps_cpu.json
    python tools/benchmark_pretext_steps.py --table benchmarks/pretext_steps_cuda.json   # the table of a report
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gc
import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # for `plugin`
if os.path.join(REPO, "tools") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "tools"))  # for benchmark_train's machine description
# The project's modules are imported where they are used, so that --table (gpu_check.sh's last step) starts quickly.

PARTS = ("i2p_mae", "hardneg", "cross_most", "precompute")
I2P_CFG = os.path.join("cfgs", "shapenet", "i2p_mae.yaml")
HARDNEG_CFG = os.path.join("cfgs", "shapenet", "hardneg-i2i.yaml")
CROSS_MOST_CFG = os.path.join("cfgs", "modelnet40", "cross_most.yaml")
PRECOMPUTE_TOOL = os.path.join("tools", "precompute_similarity.py")
TINY_I2P_OVERRIDES = ["model.encoder_args.num_tokens=[64,32,16]", "model.encoder_args.k_neighbors=[8,4,4]",
                      "model.encoder_args.dims=[16,32,64]", "model.encoder_args.depths=[1,1,1]",
                      "model.encoder_args.num_heads=4", "model.decoder_args.dims=[64,32]",
                      "model.decoder_args.num_heads=4"]
TINY_POINT_VIT = {"embed_dim": 32, "depth": 1, "num_heads": 2, "group_dim": 32, "num_groups": 8, "group_size": 8}
SIZES = {
    "full": {
        "i2p_mae": {"batch": 64, "points": 2048, "overrides": [],
                    "teacher": {"NAME": "clip_vit", "name": "ViT-B-16", "pretrained": "none"}},
        "hardneg": {"batch": 256, "points": 1024, "embed_dim": 512, "categories": 55, "per_category": 256,
                    "kind": "i2i", "alpha": 0.25},
        "cross_most": {"batch": 128, "points": 1024, "image_size": 224, "classes": 40, "threshold": 0.0,
                       "image_encoder": {"name": "ViT-B-16", "pretrained": "none"}, "overrides": []},
        "precompute": {"objects": 256, "categories": 4, "views": 20, "image_size": 224, "warmup_objects": 8,
                       "batch_size": 128, "encoder": {"NAME": "clip", "name": "ViT-B-32", "pretrained": "none"}},
        "steps": 10, "warmup": 3,
    },
    "tiny": {
        "i2p_mae": {"batch": 2, "points": 256, "overrides": TINY_I2P_OVERRIDES,
                    "teacher": {"NAME": "clip_vit", "name": "tiny-clip-test", "pretrained": "none"}},
        "hardneg": {"batch": 8, "points": 256, "embed_dim": 32, "categories": 3, "per_category": 8,
                    "kind": "i2i", "alpha": 0.25},
        "cross_most": {"batch": 4, "points": 128, "image_size": 32, "classes": 8, "threshold": 0.0,
                       "image_encoder": {"name": "tiny-clip-test", "pretrained": "none"},
                       "overrides": [f"model.encoder_args.{k}={v}" for k, v in TINY_POINT_VIT.items()]},
        "precompute": {"objects": 4, "categories": 2, "views": 2, "image_size": 32, "warmup_objects": 2,
                       "batch_size": 4, "encoder": {"NAME": "clip", "name": "tiny-clip-test", "pretrained": "none"}},
        "steps": 2, "warmup": 1,
    },
}
TARGETS = {"i2p_mae_s_per_step": 0.3, "i2p_mae_peak_gb": 22.0}  # issue 12 §6
PAPER = {"i2p_mae_s_per_step": 1.19, "i2p_mae_peak_gb": 22.4, "gpu": "RTX 3090"}
Batch = dict[str, Any]


class BadOption(Exception):
    """A command-line option that cannot be used; its message is one sentence."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one sentence and exit status 2 from main, not argparse's usage dump
        raise BadOption(f"{message} (see --help)")


# ---- timing ----

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PartTimer:
    """Time every call of a function inside a step: CUDA events on a GPU (read after a synchronize), else
    ``perf_counter``. Wrap the function with :meth:`wrap`; :meth:`take` returns the ms since the last take.

    Args:
        device: where the step runs.
    """

    def __init__(self, device: torch.device):
        self.device, self.records = device, []

    def wrap(self, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                out = fn(*args, **kwargs)
                end.record()
                self.records.append((start, end))
                return out
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            self.records.append((time.perf_counter() - start) * 1e3)
            return out
        return timed

    def take(self) -> list[float]:
        synchronize(self.device)
        ms = [r if isinstance(r, float) else r[0].elapsed_time(r[1]) for r in self.records]
        self.records = []
        return ms


def time_steps(step: Callable[[], Any], steps: int, warmup: int, device: torch.device,
               timers: Sequence[PartTimer] = ()) -> list[float]:
    """``warmup`` untimed calls of ``step``, then ``steps`` timed ones; their wall times in ms (synchronized)."""
    for _ in range(warmup):
        step()
    for timer in timers:
        timer.take()  # drop the warm-up's parts
    times = []
    for _ in range(steps):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(q1, median, q3) of ``values`` (inclusive method; one value is all three)."""
    if len(values) == 1:
        return (values[0],) * 3
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def step_summary(times: Sequence[float], batch: int) -> dict:
    """s/step (median, q1, q3), steps/s and instances/s of step times ``times`` (ms) at ``batch`` clouds a step."""
    q1, median, q3 = quartiles(times)
    return {"steps": len(times), "s_per_step": median / 1e3, "q1_s": q1 / 1e3, "q3_s": q3 / 1e3,
            "steps_per_s": 1e3 / median, "instances_per_s": batch * 1e3 / median, "step_ms": list(times)}


def part_summary(part: Sequence[float], times: Sequence[float]) -> dict:
    """A part's median ms and its share of the steps (summed part time / summed step time)."""
    return {"median_ms": statistics.median(part) if part else None, "calls": len(part),
            "share": sum(part) / sum(times) if part else None}


@contextlib.contextmanager
def peak_memory(device: torch.device, into: dict):
    """``into['peak_mib']``, ``['peak_gb']`` and ``['reserved_peak_mib']`` of the enclosed run (None off CUDA)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    yield
    cuda = device.type == "cuda"
    allocated = torch.cuda.max_memory_allocated(device) if cuda else None
    into["peak_mib"] = allocated / 2**20 if cuda else None
    into["peak_gb"] = allocated / 1e9 if cuda else None
    into["reserved_peak_mib"] = torch.cuda.max_memory_reserved(device) / 2**20 if cuda else None


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ---- the training step ----

def make_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, amp_dtype: Optional[torch.dtype],
              clip: Optional[float], losses: list, forward: Optional[Callable[[], tuple]] = None,
              after_step: Optional[Callable[[], None]] = None) -> Callable[[], None]:
    """One training step as ``TrainingLoop`` runs it (see the module docstring); the loss goes to ``losses``.
    ``forward`` replaces ``model(batch)`` (e.g. with a teacher); ``after_step`` runs after the optimizer step (as
    the loop's hooks, e.g. the EMA update)."""
    device = next(v for v in batch.values() if torch.is_tensor(v)).device
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext():
            loss, _ = forward() if forward is not None else model(batch)
        scaler.scale(loss).backward()
        if clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        scaler.step(optimizer)
        scaler.update()
        if after_step is not None:
            after_step()
        losses.append(loss.detach())

    return step


def synthetic_clouds(batch: int, points: int, seed: int) -> torch.Tensor:
    """(B, N, 3) seeded uniform clouds in [-1, 1]^3."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, points, 3, generator=g) * 2 - 1


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def measure_i2p_mae(size: dict, args: argparse.Namespace, device: torch.device, amp_dtype) -> dict:
    """Issue 12 §6: the I2P-MAE pre-training step, its teacher's share and the peak memory."""
    from plugin.engine import load_config
    from plugin.engine.batch import prepare_batch
    from plugin.engine.builders import build_grouped_optimizer
    from plugin.engine.modes.pretrain import build_pretext_model

    teacher = size["teacher"]
    overrides = [f"model.teacher.{k}={v}" for k, v in teacher.items()] + list(size["overrides"])
    cfg = load_config(os.path.join(REPO, I2P_CFG), overrides)
    torch.manual_seed(args.seed)
    model = build_pretext_model(cfg).to(device)
    model.train()
    optimizer = build_grouped_optimizer(cfg, model)
    pos = synthetic_clouds(size["batch"], size["points"], args.seed)
    batch = prepare_batch({"pos": pos, "x": pos.clone()}, device, 3)
    teach, net = PartTimer(device), PartTimer(device)
    model.teach = teach.wrap(model.teach)  # the instance attribute shadows the method that forward calls
    model.teacher.forward = net.wrap(model.teacher.forward)
    losses: list = []
    step = make_step(model, optimizer, batch, amp_dtype, cfg.get("grad_norm_clip"), losses)
    row: dict = {"cfg": I2P_CFG, "overrides": overrides, "batch": size["batch"], "points": size["points"],
                 "teacher": dict(teacher), "teacher_image_size": int(model.teacher.image_size),
                 "trainable_params": trainable(model),
                 "teacher_params": sum(p.numel() for p in model.teacher.parameters()),
                 "optimizer": type(optimizer).__name__, "grad_norm_clip": cfg.get("grad_norm_clip")}
    memory: dict = {}
    torch.manual_seed(args.seed)
    with peak_memory(device, memory):
        times = time_steps(step, args.steps, args.warmup, device, (teach, net))
    row.update(step_summary(times, size["batch"]))
    row["teach"] = part_summary(teach.take(), times)
    row["teacher_forward"] = part_summary(net.take(), times)
    row.update(memory, loss=float(losses[-1]))
    del model, optimizer, batch, step, losses
    release(device)
    return row


def write_synthetic_store(root: str, categories: int, per_category: int, kind: str, seed: int) -> str:
    """A similarity store in ``root``: ``categories`` x ``per_category`` objects, each category's matrix
    (1 + e_a . e_b) / 2 of random unit vectors (symmetric, in [0, 1], ones on the diagonal, like I2I)."""
    from plugin.clip.similarity_store import file_fingerprint, make_manifest, write_category, write_manifest

    g = torch.Generator().manual_seed(seed)
    ids = {f"cat{c:02d}": [f"cat{c:02d}_{i:04d}" for i in range(per_category)] for c in range(categories)}
    manifest = make_manifest({"kind": "benchmark", "name": "synthetic"}, views=1, categories=ids, kinds=[kind])
    for name, members in ids.items():
        e = F.normalize(torch.randn(per_category, 16, generator=g), dim=1)
        write_category(root, kind, name, members, (1 + e @ e.t()) / 2, "float32",
                       file_fingerprint(manifest, kind, name, members))
    write_manifest(root, manifest)
    return root


def build_hardneg_model(size: dict, device: torch.device, seed: int, store_dir: str):
    """``(cfg, model, optimizer)``: CLIPAlign of ``cfgs/shapenet/hardneg-i2i.yaml``'s encoder and recipe, on
    precomputed ``embed_dim``-d embeddings, with the hard-negative objective over a synthetic store written
    into ``store_dir`` and read through ``model.similarity`` as in training."""
    from plugin.engine import load_config
    from plugin.engine.builders import build_grouped_optimizer
    from plugin.models.pretext.clip_align import CLIPAlign

    cfg = load_config(os.path.join(REPO, HARDNEG_CFG))
    m = cfg.model
    write_synthetic_store(store_dir, size["categories"], size["per_category"], size["kind"], seed)
    torch.manual_seed(seed)
    model = CLIPAlign(encoder_args=m.encoder_args, objective="hardneg", embed_dim=size["embed_dim"],
                      similarity={"dir": store_dir, "kind": size["kind"], "alpha": size["alpha"]},
                      logit_scale_init=m.logit_scale_init, zeroshot_templates=m.zeroshot_templates)
    model = model.to(device)
    model.train()
    return cfg, model, build_grouped_optimizer(cfg, model)


def hardneg_batch(size: dict, device: torch.device, seed: int) -> Batch:
    """A batch as ClipTriplets with a store gives it: ``pos``, ``x``, unit ``img_emb``, ``y``, ``sim_category``,
    ``sim_row`` (categories and rows drawn uniformly)."""
    from plugin.engine.batch import prepare_batch

    g = torch.Generator().manual_seed(seed + 1)
    b = size["batch"]
    category = torch.randint(0, size["categories"], (b,), generator=g)
    pos = synthetic_clouds(b, size["points"], seed)
    data = {"pos": pos, "x": pos.clone(), "y": category.clone(), "sim_category": category,
            "sim_row": torch.randint(0, size["per_category"], (b,), generator=g),
            "img_emb": F.normalize(torch.randn(b, size["embed_dim"], generator=g), dim=1)}
    return prepare_batch(data, device, 3)


def measure_hardneg(size: dict, args: argparse.Namespace, device: torch.device, amp_dtype) -> dict:
    """Issue 13 §6: CLIPAlign hard-negative training steps/s with precomputed image embeddings."""
    import plugin.models.pretext.clip_align as clip_align

    store_dir = tempfile.mkdtemp(prefix="hardneg_store_", dir=args.tmp)
    cfg, model, optimizer = build_hardneg_model(size, device, args.seed, store_dir)
    batch = hardneg_batch(size, device, args.seed)
    weights = PartTimer(device)
    original = clip_align.global_negative_weights
    clip_align.global_negative_weights = weights.wrap(original)  # forward looks the function up at call time
    try:
        losses: list = []
        step = make_step(model, optimizer, batch, amp_dtype, cfg.get("grad_norm_clip"), losses)
        row: dict = {"cfg": HARDNEG_CFG, "encoder": str(cfg.model.encoder_args.NAME), "objective": "hardneg",
                     "kind": size["kind"], "alpha": size["alpha"], "batch": size["batch"], "points": size["points"],
                     "embed_dim": size["embed_dim"],
                     "store": {"categories": size["categories"], "per_category": size["per_category"]},
                     "trainable_params": trainable(model), "optimizer": type(optimizer).__name__,
                     "grad_norm_clip": cfg.get("grad_norm_clip")}
        memory: dict = {}
        torch.manual_seed(args.seed)
        with peak_memory(device, memory):
            times = time_steps(step, args.steps, args.warmup, device, (weights,))
        row.update(step_summary(times, size["batch"]))
        row["weights"] = part_summary(weights.take(), times)
        row.update(memory, loss=float(losses[-1]), batch_categories=int(batch["sim_category"].unique().numel()))
    finally:
        clip_align.global_negative_weights = original
        shutil.rmtree(store_dir, ignore_errors=True)
    del model, optimizer, batch
    release(device)
    return row


# ---- Cross-MoST ----

def cross_most_overrides(size: dict) -> list[str]:
    """The config overrides of a size: the image tower, ``classes`` names ``c0``, ``c1``, ..., the threshold."""
    names = [f"c{i}" for i in range(size["classes"])]
    return ([f"model.image_encoder.{k}={v}" for k, v in size["image_encoder"].items()]
            + [f"+model.class_names={names}", f"model.threshold={size['threshold']}"] + list(size["overrides"]))


def cross_most_batch(size: dict, device: torch.device, seed: int) -> Batch:
    """A batch of pairs as ``CrossModalPairs`` gives them: ``img_weak``/``img_strong`` (B, 3, S, S) uniform in [0, 1],
    ``pos_weak``/``pos_strong`` (B, N, 3) uniform clouds, ``y``; on ``device``."""
    g = torch.Generator().manual_seed(seed + 2)
    b, side, points = size["batch"], size["image_size"], size["points"]
    data = {"img_weak": torch.rand(b, 3, side, side, generator=g),
            "img_strong": torch.rand(b, 3, side, side, generator=g),
            "pos_weak": synthetic_clouds(b, points, seed), "pos_strong": synthetic_clouds(b, points, seed + 1),
            "y": torch.randint(0, size["classes"], (b,), generator=g)}
    return {k: v.to(device) for k, v in data.items()}


def measure_cross_most(size: dict, args: argparse.Namespace, device: torch.device, amp_dtype) -> dict:
    """Issue 14 §6: the Cross-MoST self-training step (student, EMA teacher), the teacher's and the EMA update's
    shares and the peak memory."""
    from plugin.engine import load_config
    from plugin.engine.builders import build_grouped_optimizer, build_model
    from plugin.models.ema import build_ema

    overrides = cross_most_overrides(size)
    cfg = load_config(os.path.join(REPO, CROSS_MOST_CFG), overrides)
    options = cfg.selftrain
    cfg.lr = float(options.base_lr) * size["batch"] / float(options.lr_batch)  # the runner's lr, one process
    torch.manual_seed(args.seed)
    model = build_model(cfg).to(device)
    model.train()
    optimizer = build_grouped_optimizer(cfg, model)
    ema = build_ema(cfg.get("ema"), model)  # ModelEma(model, MomentumSchedule(0.99, 0.9998, 400)), as the runner's
    teacher = ema.module
    batch = cross_most_batch(size, device, args.seed)
    image, point, update = PartTimer(device), PartTimer(device), PartTimer(device)
    teacher.image.forward = image.wrap(teacher.image.forward)  # the teacher's two passes on the weak pair
    teacher.point_features = point.wrap(teacher.point_features)  # shadows the method forward calls
    ema_update = update.wrap(ema.update)
    updates = itertools.count(1)  # EmaHook updates with loop.updates, which already counts the update
    logs: dict = {}

    def forward() -> tuple:
        loss, figures = model(batch, teacher)
        logs.update(figures)
        return loss, figures

    losses: list = []
    step = make_step(model, optimizer, batch, amp_dtype, cfg.get("grad_norm_clip"), losses, forward=forward,
                     after_step=lambda: ema_update(model, next(updates)))
    m = cfg.model
    row: dict = {"cfg": CROSS_MOST_CFG, "overrides": overrides, "batch": size["batch"], "points": size["points"],
                 "image_size": size["image_size"], "classes": size["classes"], "image_encoder": dict(m.image_encoder),
                 "point_encoder": {k: m.encoder_args[k] for k in ("NAME", "embed_dim", "depth", "num_groups",
                                                                  "group_size")},
                 "pseudo_labels": model.source, "threshold": model.threshold, "align": model.align,
                 "fairness": model.fairness, "mim": model.mim, "mpm": model.mpm,
                 "trainable_params": trainable(model), "teacher_params": sum(p.numel() for p in teacher.parameters()),
                 "optimizer": type(optimizer).__name__, "param_groups": len(optimizer.param_groups), "lr": cfg.lr,
                 "grad_norm_clip": cfg.get("grad_norm_clip"), "ema": plain(cfg.ema)}
    memory: dict = {}
    torch.manual_seed(args.seed)
    with peak_memory(device, memory):
        times = time_steps(step, args.steps, args.warmup, device, (image, point, update))
    row.update(step_summary(times, size["batch"]))
    image_ms, point_ms = image.take(), point.take()
    row["teacher"] = part_summary([a + b for a, b in zip(image_ms, point_ms)], times)
    row["teacher_image"] = part_summary(image_ms, times)
    row["teacher_point"] = part_summary(point_ms, times)
    row["ema_update"] = part_summary(update.take(), times)
    row.update(memory, loss=float(losses[-1]), ema_momentum=ema.momentum,
               loss_terms={k[5:]: v for k, v in logs.items() if k.startswith("loss_")},
               pl_kept=logs.get("pl_kept"))
    del model, optimizer, ema, teacher, batch, step, losses, forward
    release(device)
    return row


def plain(block: Any) -> Any:
    """A config block as plain dicts and lists, for the JSON."""
    if isinstance(block, dict):
        return {k: plain(v) for k, v in block.items()}
    return list(block) if isinstance(block, (list, tuple)) else block


# ---- the precompute ----

def view_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) uint8: a shaded ellipse of random centre, radii and angle on white, like a rendered view."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cx, cy = rng.uniform(0.35, 0.65, 2)
    rx, ry = rng.uniform(0.15, 0.35, 2)
    angle = rng.uniform(0, np.pi)
    u = ((xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)) / rx
    v = (-(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)) / ry
    r2 = u * u + v * v
    shade = np.where(r2 < 1, 60 + 150 * np.sqrt(np.clip(r2, 0, 1)), 255).astype(np.uint8)
    return np.repeat(shade[:, :, None], 3, axis=2)


def write_views(root: Path, size: dict, seed: int, threads: int) -> dict:
    """A ``RenderedViews`` folder for the precompute: ``meta.json``, ``train.txt`` (every object), ``warmup.txt``
    (the first ``warmup_objects``) and ``<object>/view_XX.png``; returns the figures of writing it."""
    from PIL import Image

    start = time.perf_counter()
    classes = [f"class{c}" for c in range(size["categories"])]
    objects = [(f"obj_{k:05d}", k % size["categories"]) for k in range(size["objects"])]
    root.mkdir(parents=True, exist_ok=True)
    (root / "meta.json").write_text(json.dumps({"classes": classes, "image_size": size["image_size"]}))
    (root / "train.txt").write_text("".join(f"{o} {y}\n" for o, y in objects))
    (root / "warmup.txt").write_text("".join(f"{o} {y}\n" for o, y in objects[:size["warmup_objects"]]))

    def write(k: int) -> None:
        rng = np.random.default_rng([seed, k])
        folder = root / objects[k][0]
        folder.mkdir(exist_ok=True)
        for v in range(size["views"]):
            Image.fromarray(view_image(rng, size["image_size"])).save(folder / f"view_{v:02d}.png")

    with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
        list(pool.map(write, range(len(objects))))
    png_bytes = sum(p.stat().st_size for p in root.glob("*/view_*.png"))
    return {"write_seconds": time.perf_counter() - start, "png_mib": png_bytes / 2**20}


def load_precompute_tool():
    """``tools/precompute_similarity.py`` as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("precompute_similarity", os.path.join(REPO, PRECOMPUTE_TOOL))
    module = importlib.util.module_from_spec(spec)
    sys.modules["precompute_similarity"] = module
    spec.loader.exec_module(module)
    return module


def measure_precompute(size: dict, args: argparse.Namespace, device: torch.device) -> dict:
    """Issue 13 §6: the objects/s of ``tools/precompute_similarity.py`` on a synthetic folder, after a warm-up run."""
    tool = load_precompute_tool()
    encoder = [f"{k}={v}" for k, v in size["encoder"].items()]
    workers = args.precompute_workers
    row: dict = {"tool": PRECOMPUTE_TOOL, "encoder": dict(size["encoder"]), "objects": size["objects"],
                 "categories": size["categories"], "views": size["views"], "image_size": size["image_size"],
                 "batch_size": size["batch_size"], "workers": workers, "kinds": ["i2i"]}
    work = Path(tempfile.mkdtemp(prefix="pretext_precompute_", dir=args.tmp))
    try:
        row.update(write_views(work / "views", size, args.seed, args.threads))
        common = ["--data", str(work / "views"), "--encoder", *encoder, "--kinds", "i2i", "--device", str(device),
                  "--workers", str(workers), "--batch-size", str(size["batch_size"])]
        for split, out in (("warmup", "warm"), ("train", "store")):
            torch.manual_seed(args.seed)
            start = time.perf_counter()
            status = tool.main([*common, "--split", split, "--out", str(work / out)])
            synchronize(device)
            seconds = time.perf_counter() - start
            if status != 0:
                raise RuntimeError(f"{PRECOMPUTE_TOOL} --split {split} exited with status {status}")
        throughput = json.loads((work / "store" / "throughput.json").read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    embed = throughput.get("embedding_objects_per_s")
    row.update({"embedding_objects_per_s": embed,
                "embedding_images_per_s": embed * size["views"] if embed else None,
                "similarity_objects_per_s": throughput.get("similarity_objects_per_s"),
                "command_seconds": seconds, "command_objects_per_s": size["objects"] / seconds,
                "throughput_json": throughput})
    release(device)
    return row


# ---- the report ----

def check_targets(report: dict) -> list[str]:
    """PASS/MISS lines of issue 12's targets; only for a full-size run on CUDA."""
    row = report.get("i2p_mae")
    settings = report["settings"]
    if not row or "error" in row:
        return []
    if settings["device_type"] != "cuda" or settings["sizes"] != "full":
        return [f"n/a  I2P-MAE targets (<= {TARGETS['i2p_mae_s_per_step']} s/step, <= {TARGETS['i2p_mae_peak_gb']:g}"
                f" GB) apply to the full size on CUDA, not {settings['sizes']} on {settings['device_type']}"]
    s, gb = row["s_per_step"], row["peak_gb"]
    return [f"{'PASS' if s <= TARGETS['i2p_mae_s_per_step'] else 'MISS'} I2P-MAE step {s:.3f} s "
            f"(target <= {TARGETS['i2p_mae_s_per_step']}; paper {PAPER['i2p_mae_s_per_step']} on an {PAPER['gpu']})",
            f"{'PASS' if gb <= TARGETS['i2p_mae_peak_gb'] else 'MISS'} I2P-MAE peak memory {gb:.1f} GB "
            f"(target <= {TARGETS['i2p_mae_peak_gb']:g}; paper {PAPER['i2p_mae_peak_gb']} on an {PAPER['gpu']})"]


def _fmt(value: Optional[float], fmt: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, fmt)


def format_table(report: dict) -> str:
    """The figures as a plain-text table."""
    meta, s = report["meta"], report["settings"]
    lines = [f"Pre-training steps on {meta['device']} ({meta['cpu']}, {meta['threads']} threads), sizes {s['sizes']}, "
             f"amp {s['amp']}: median of {s['steps']} steps after {s['warmup']} warm-up; a step = forward, loss, "
             f"backward, AdamW"]
    header = (f"{'model':<22}{'batch':>6}{'points':>7}{'s/step':>9}{'steps/s':>9}{'inst/s':>9}"
              f"{'part ms (share)':>24}{'peak GB':>9}")
    lines += [header, "-" * len(header)]
    for key, name, part, label in (("i2p_mae", "I2P-MAE (ViT teacher)", "teach", "teacher"),
                                   ("hardneg", "CLIPAlign hardneg-i2i", "weights", "W"),
                                   ("cross_most", "Cross-MoST selftrain", "teacher", "teacher")):
        row = report.get(key)
        if row is None:
            continue
        if "error" in row:
            lines.append(f"{name:<22}  failed: {row['error']}")
            continue
        p = row[part]
        cell = f"{label} {_fmt(p['median_ms'], '.1f')} ({_fmt(p['share'], '.0%')})"
        lines.append(f"{name:<22}{row['batch']:>6}{row['points']:>7}{row['s_per_step']:>9.3f}{row['steps_per_s']:>9.2f}"
                     f"{row['instances_per_s']:>9.1f}{cell:>24}{_fmt(row['peak_gb'], '.2f'):>9}")
        if key == "i2p_mae":
            net = row["teacher_forward"]
            lines.append(f"{'':<22}teacher = renders + {row['teacher']['name']} forward "
                         f"({_fmt(net['median_ms'], '.1f')} ms, {_fmt(net['share'], '.0%')}) + map reading")
        if key == "cross_most":
            image, point, ema = row["teacher_image"], row["teacher_point"], row["ema_update"]
            lines.append(f"{'':<22}teacher = {row['image_encoder']['name']} {_fmt(image['median_ms'], '.1f')} ms "
                         f"({_fmt(image['share'], '.0%')}) + {row['point_encoder']['NAME']} "
                         f"{_fmt(point['median_ms'], '.1f')} ms ({_fmt(point['share'], '.0%')}) on the weak pair; "
                         f"EMA update {_fmt(ema['median_ms'], '.1f')} ms ({_fmt(ema['share'], '.0%')})")
    row = report.get("precompute")
    if row is not None:
        if "error" in row:
            lines.append(f"{'precompute':<22}  failed: {row['error']}")
        else:
            lines.append(f"precompute_similarity {row['objects']} objects x {row['views']} views of "
                         f"{row['image_size']} px, {row['encoder']['name']}, {row['workers']} workers: embedding "
                         f"{_fmt(row['embedding_objects_per_s'], '.1f')} objects/s "
                         f"({_fmt(row['embedding_images_per_s'], '.0f')} images/s), similarity "
                         f"{_fmt(row['similarity_objects_per_s'], '.0f')} objects/s, whole command "
                         f"{row['command_objects_per_s']:.1f} objects/s")
    targets = report.get("targets") or []
    if targets:
        lines += ["Targets (issue 12 §6):"] + [f"  {t}" for t in targets]
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """The options, checked; :class:`BadOption` (one sentence) for any that cannot be used."""
    cores = len(os.sched_getaffinity(0))
    parser = _Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (default cuda)")
    parser.add_argument("--sizes", default="full", choices=sorted(SIZES),
                        help="full: the issues' sizes; tiny: a CPU smoke run of seconds")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated, from " + ", ".join(PARTS))
    parser.add_argument("--amp", default=None,
                        help="the training loop's amp: auto | bf16 | fp16 | off (default bf16 on cuda, off on cpu)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model (default 10; tiny 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; tiny 1)")
    parser.add_argument("--out", default=None, help="JSON output path (default benchmarks/pretext_steps_<device>.json)")
    parser.add_argument("--precompute-workers", type=int, default=None,
                        help="image-reading processes of the precompute (default min(8, cores); tiny 0)")
    parser.add_argument("--tmp", default=None, help="where the synthetic views folder goes (default: the system's)")
    parser.add_argument("--threads", type=int, default=cores,
                        help="torch CPU threads (default: the cores this process may use)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", metavar="JSON", default=None, help="print the table of a report and exit")
    args = parser.parse_args(argv)
    if args.table:
        return args
    from plugin.engine.loop import AMP_CHOICES

    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown or not args.parts:
        raise BadOption(f"--parts {','.join(unknown) or '(empty)'} is not a list of {', '.join(PARTS)}")
    try:
        args.device_obj = torch.device(args.device)
    except RuntimeError:
        raise BadOption(f"--device '{args.device}' is not a device: pass cpu, cuda or cuda:N") from None
    if args.device_obj.type not in ("cpu", "cuda"):
        raise BadOption(f"--device '{args.device}' is neither cpu nor cuda: pass cpu, cuda or cuda:N")
    cuda = args.device_obj.type == "cuda"
    args.amp = args.amp or ("bf16" if cuda else "off")
    if args.amp not in AMP_CHOICES:
        raise BadOption(f"--amp '{args.amp}' is not one of {', '.join(AMP_CHOICES)}")
    size = SIZES[args.sizes]
    args.steps = size["steps"] if args.steps is None else args.steps
    args.warmup = size["warmup"] if args.warmup is None else args.warmup
    tiny = args.sizes == "tiny"
    if args.precompute_workers is None:
        args.precompute_workers = 0 if tiny else min(8, cores)
    for option, value, minimum in (("--steps", args.steps, 1), ("--warmup", args.warmup, 0),
                                   ("--precompute-workers", args.precompute_workers, 0),
                                   ("--threads", args.threads, 1)):
        if value < minimum:
            raise BadOption(f"{option} is {value}: pass an integer >= {minimum}")
    if args.tmp is not None and not os.path.isdir(args.tmp):
        raise BadOption(f"--tmp '{args.tmp}' is not a folder: pass an existing folder")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    """Run the parts; returns the exit status (2 with one sentence for a bad option, 1 when a part failed)."""
    try:
        args = parse_args(argv)
        if args.table:
            if not os.path.isfile(args.table):
                raise BadOption(f"--table '{args.table}' is not a file: pass a report this tool wrote")
            with open(args.table) as fh:
                print(format_table(json.load(fh)))
            return 0
    except BadOption as e:
        print(f"error: {e}.", file=sys.stderr)
        return 2
    from benchmark_train import cpu_model
    from plugin.engine.loop import resolve_amp
    from plugin.errors import UserError
    from plugin.io import save_json

    device = args.device_obj
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"benchmark_pretext_steps: --device {args.device} but no CUDA device is visible; use --device cpu.")
        return 0
    out = args.out or os.path.join("benchmarks", f"pretext_steps_{device.type}.json")
    torch.set_num_threads(args.threads)
    amp_dtype = resolve_amp(args.amp, device)
    size = SIZES[args.sizes]
    report: dict = {
        "settings": {"sizes": args.sizes, "parts": args.parts, "device_type": device.type, "amp": args.amp,
                     "amp_dtype": str(amp_dtype).replace("torch.", "") if amp_dtype else None, "steps": args.steps,
                     "warmup": args.warmup, "seed": args.seed, "targets": TARGETS, "paper": PAPER},
        "meta": {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "cpu": cpu_model(),
                 "cores": len(os.sched_getaffinity(0)), "threads": torch.get_num_threads(),
                 "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
                 "float32_matmul_precision": torch.get_float32_matmul_precision(),
                 "load_avg_start": list(os.getloadavg()),
                 "timing": "perf_counter between torch.cuda.synchronize calls per step (median after warm-up); parts "
                           "by CUDA events (cuda) or perf_counter (cpu)",
                 "when": time.strftime("%Y-%m-%d %H:%M:%S")}}
    failed = False
    for part in args.parts:
        print(f"{part} ({args.sizes}, {device}) ...", file=sys.stderr, flush=True)
        try:
            if part == "i2p_mae":
                report[part] = measure_i2p_mae(size[part], args, device, amp_dtype)
            elif part == "hardneg":
                report[part] = measure_hardneg(size[part], args, device, amp_dtype)
            elif part == "cross_most":
                report[part] = measure_cross_most(size[part], args, device, amp_dtype)
            else:
                report[part] = measure_precompute(size[part], args, device)
        except (RuntimeError, UserError) as err:  # out of memory, a kernel missing for this GPU, a failed precompute
            failed = True
            report[part] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"}
            print(f"{part} failed: {report[part]['error']}", file=sys.stderr, flush=True)
            release(device)
        report["targets"] = check_targets(report)
        report["meta"]["load_avg_end"] = list(os.getloadavg())
        save_json(report, out, config_key="--out")  # after every part: a run cut off keeps what it measured
    print(format_table(report))
    print(f"\nwrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
