"""Cross-MoST on the CPU (issue 14, Sec. 6): does cross-modal self-training lift a weak classifier without labels?

No CLIP weights exist here, so the method's zero-shot start cannot be reproduced. The mechanism is measured instead
(``cfgs/demo_cross_most/default.yaml``): the image tower is the real ImageNet EfficientNet-Lite0, the point branch
PointNeXt-S aligned to its features (the plain arm of ``tools/benchmark_hardneg.py``, ``--alignment``), and the
classifier Q starts from the class means of 1 labelled train example per class (one view and one cloud). Then
self-training without labels, per dataset and arm:

- ``joint``: the paper's joint pseudo-labels with image-point alignment;
- ``own``: each branch its own teacher label, no alignment (MUST's baseline self-training on each branch);
- ``joint-noalign``: joint pseudo-labels without the alignment loss.

Datasets, each prepared once (rerun the same command to resume):

- ``real3``: the real 3-class ModelNet40 (905 train, 170 test shapes; views of ``tools/benchmark_hardneg.py``, linked
  here with labels 0..2);
- ``procedural``: the 19 procedural classes of ``make demo`` (532 train, 266 test shapes), rendered here with
  CLIP2Point's 10 cameras.

The test split is only scored: Image (view 0), Image* (4 views) and Point cloud top-1 of Q, before (epoch 0) and after,
student and EMA teacher. Each finished arm is written to ``--out`` (JSON) at once.

Example::

    python tools/benchmark_cross_most.py --datasets real3 --threads 1   # about 1 hour beside the other dataset
    python tools/benchmark_cross_most.py --datasets procedural --epochs 2 --arms joint own --threads 1
    python tools/benchmark_cross_most.py model.threshold=0.9 --datasets real3   # overrides before the list options
"""
import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))
CFG = REPO / "cfgs" / "demo_cross_most" / "default.yaml"
SHARED = REPO.parent / "shared" / "data"
ARMS = {"joint": [], "own": ["model.pseudo_labels=own", "model.align=False"], "joint-noalign": ["model.align=False"]}
DATASETS = ("real3", "procedural")
BRANCHES = (("image", "Image"), ("image_star", "Image*"), ("point", "Point"))


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--alignment", default=None,
                        help="the CLIPAlign checkpoint of the point branch (default: the plain arm of "
                             "benchmarks/hardneg_cpu.json)")
    parser.add_argument("--real", default=str(SHARED / "modelnet40_normal_resampled"),
                        help="the real modelnet40_normal_resampled folder")
    parser.add_argument("--real-views", default=str(REPO / "data" / "views" / "modelnet40_3class"),
                        help="rendered views of the real 3-class ModelNet40 (rendered here when absent)")
    parser.add_argument("--shapes", default=str(REPO / "data" / "demo" / "shapes"),
                        help="the procedural shapes (made here when absent, as make demo makes them)")
    parser.add_argument("--data", default=str(REPO / "data" / "demo_cross_most"), help="linked and rendered views")
    parser.add_argument("--root-dir", default=str(REPO / "log"), help="run folders go to <root-dir>/demo_cross_most/")
    parser.add_argument("--out", default=None, help="result JSON (default: benchmarks/cross_most_<datasets>.json)")
    parser.add_argument("--epochs", type=int, default=None, help="self-training epochs (default: per dataset)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (e.g. 1 beside another benchmark)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")
    return parser.parse_args(argv)


def default_alignment() -> str:
    """The plain arm's alignment checkpoint recorded by ``tools/benchmark_hardneg.py``."""
    from plugin.errors import UserError

    record = REPO / "benchmarks" / "hardneg_cpu.json"
    try:
        run_dir = json.loads(record.read_text())["arms"]["plain"]["pretrain"]["run_dir"]
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"No alignment checkpoint recorded in {record}: run python tools/benchmark_hardneg.py --arms "
                        f"plain first, or pass --alignment <ckpt_best.pth>.") from err
    return os.path.join(run_dir, "ckpt_best.pth")


def link_relabelled(source: Path, out: Path) -> None:
    """``out``: the objects of the views folder ``source`` linked, with the labels present renumbered 0..K-1 and
    meta.json's classes cut to them."""
    meta = json.loads((source / "meta.json").read_text())
    splits = {s: [line.split() for line in (source / f"{s}.txt").read_text().splitlines() if line.strip()]
              for s in ("train", "test")}
    present = sorted({int(label) for pairs in splits.values() for _, label in pairs})
    index = {label: i for i, label in enumerate(present)}
    out.mkdir(parents=True, exist_ok=True)
    for pairs in splits.values():
        for object_id, _ in pairs:
            if not (out / object_id).exists():
                os.symlink((source / object_id).resolve(), out / object_id)
    for split, pairs in splits.items():
        (out / f"{split}.txt").write_text("".join(f"{o} {index[int(label)]}\n" for o, label in pairs))
    (out / "meta.json").write_text(json.dumps({**meta, "classes": [meta["classes"][c] for c in present]}, indent=1))


def prepare(name: str, args: argparse.Namespace) -> Path:
    """The views folder of dataset ``name``, rendered or linked when absent."""
    from plugin.errors import UserError

    demo = __import__("demo")
    render = demo.load_tool("render_views").main
    common = ["--splits", "train", "test", "--view-set", "orthogonal_corner10", "--image-size", "224"]
    if name == "real3":
        if render(["--source", "modelnet40_normal_resampled", "--data-dir", args.real, "--out", args.real_views,
                   *common]):
            raise UserError("rendering the real views failed (see the error above).")
        out = Path(args.data) / "real3"
        link_relabelled(Path(args.real_views), out)
        return out
    shapes = Path(args.shapes)
    if demo.load_tool("make_shapes").main(["--out", str(shapes), "--per-class-train", "28", "--per-class-test", "14",
                                           "--seed", "0"]):
        raise UserError("generating the procedural shapes failed (see the error above).")
    out = Path(args.data) / "procedural"
    if render(["--source", "modelnet40_normal_resampled", "--data-dir", str(shapes), "--out", str(out), *common]):
        raise UserError("rendering the procedural views failed (see the error above).")
    return out


def arm_record(metrics: Dict[str, Any]) -> Dict[str, Any]:
    """The figures of one run kept in the JSON."""
    keep = ("start_", "student_", "teacher_", "last_pl_", "last_loss", "labels_read", "run_dir", "epochs")
    return {k: v for k, v in metrics.items() if k.startswith(keep)}


def table(results: Dict[str, Any]) -> str:
    """Top-1 before -> after (student / teacher) per branch, and the pseudo-label figures of the last epoch."""
    lines = [f"{'arm':<15}" + "".join(f"{label + ' start→student/teacher':>30}" for _, label in BRANCHES)
             + f"{'kept':>7}{'PL acc':>8}{'from img':>9}{'min':>6}"]
    for name, r in results["arms"].items():
        cells = []
        for branch, _ in BRANCHES:
            start, student, teacher = (r.get(f"{p}_{branch}_top1") for p in ("start_student", "student", "teacher"))
            cells.append(f"{start:>12.2f} → {student:6.2f} / {teacher:6.2f}" if start is not None else f"{'-':>30}")
        lines.append(f"{name:<15}" + "".join(f"{c:>30}" for c in cells)
                     + f"{100 * r.get('last_pl_kept', 0):>7.1f}{r.get('last_pl_acc', float('nan')):>8.2f}"
                     + (f"{'-':>9}" if name.endswith("/own") else f"{100 * r.get('last_pl_from_image', 0):>9.1f}")
                     + f"{r['seconds'] / 60:>6.1f}")                # own: each branch its own label
    return __import__("demo").ruled(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the comparison; returns the exit status (2 with one sentence when a step fails)."""
    args = parse_args(argv)
    import torch
    from plugin.engine import load_config
    from plugin.errors import UserError

    demo = __import__("demo")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or REPO / "benchmarks" / f"cross_most_{'_'.join(args.datasets)}.json")
    epochs = {"real3": 5, "procedural": 6}
    try:
        alignment = args.alignment or default_alignment()
        if not os.path.isfile(alignment):
            raise UserError(f"Alignment checkpoint '{alignment}' not found: pass --alignment <ckpt_best.pth> of a "
                            f"cfgs/demo_hardneg/pretrain.yaml run.")
        load_config(str(CFG), args.overrides)             # fail on a wrong override before any long step
        folders = {name: prepare(name, args) for name in args.datasets}
        settings = {"datasets": args.datasets, "epochs": {d: args.epochs or epochs[d] for d in args.datasets},
                    "alignment": alignment, "seed": args.seed, "overrides": args.overrides,
                    "image_encoder": "tf_efficientnet_lite0 (ImageNet, offline package), 160 px",
                    "point_encoder": "PointNeXt-S, 512 points, aligned to Lite0 (plain CLIPAlign)",
                    "classifier": "class means of 1 labelled train example per class"}

        def run_arm(key: str) -> Dict[str, Any]:
            dataset, arm = key.split("/")
            metrics = demo.run_main(CFG, [f"root_dir={args.root_dir}", f"seed={args.seed}", f"exp={dataset}-{arm}",
                                          f"dataset.common.data_dir={folders[dataset]}", f"pretrained_path={alignment}",
                                          f"epochs={settings['epochs'][dataset]}", *ARMS[arm], *args.overrides],
                                    args.root_dir, run_prefix=f"{dataset}-{arm}")
            return arm_record(metrics)

        keys: List[str] = [f"{d}/{a}" for d in args.datasets for a in args.arms]
        results = demo.measure_arms(out, settings, keys, run_arm)
    except (UserError, demo.DemoError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(results))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
