"""The embedded demo (``make demo``): does Pic@Point pre-training help a point encoder, on the CPU, in minutes?

Steps, each skipped or resumed when its output is already there:

1. procedural shapes (``tools/make_shapes.py``) under ``<data>/shapes``;
2. their rendered views (``tools/render_views.py``, train split) under ``<data>/views``;
3. Pic@Point pre-training of a small DGCNN (``cfgs/demo/pic_at_point.yaml``, via ``tools/main.py``);
4. a linear SVM probe (``cfgs/demo/svm.yaml``) of the pre-trained encoder and of a randomly initialised
   one of the same architecture, on the shapes' train/test split with the same seed;
5. a table of both SVM results, the run folders and the total time.

Example::

    python tools/demo.py                      # the full demo, a few minutes on 2 CPU cores
    python tools/demo.py --epochs 1 --per-class-train 4 --per-class-test 2 --image-size 64 \\
        --backbone resnet18 --weights none --points 128 --encoder channels=8 k=8 embed_dim=32
"""
import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PRETRAIN_CFG = REPO / "cfgs" / "demo" / "pic_at_point.yaml"
SVM_CFG = REPO / "cfgs" / "demo" / "svm.yaml"


class DemoError(Exception):
    """A step failed; the message is one sentence for the user."""


def load_tool(name: str) -> Any:
    """The module ``tools/<name>.py``, imported by name so that render_views' spawned workers find it too."""
    if str(REPO / "tools") not in sys.path:
        sys.path.insert(0, str(REPO / "tools"))
    return importlib.import_module(name)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO / "data" / "demo"), help="folder of shapes/ and views/")
    parser.add_argument("--root-dir", default=str(REPO / "log"), help="run folders go to <root-dir>/demo/")
    parser.add_argument("--per-class-train", type=int, default=28, help="training shapes per class")
    parser.add_argument("--per-class-test", type=int, default=14, help="test shapes per class")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shapes and of every run")
    parser.add_argument("--epochs", type=int, default=None, help="pre-training epochs (default: the config's)")
    parser.add_argument("--batch-size", type=int, default=None, help="pre-training batch (default: the config's)")
    parser.add_argument("--points", type=int, default=None, help="points per cloud (default: the config's)")
    parser.add_argument("--image-size", type=int, default=None, help="rendered view size (default: the config's)")
    parser.add_argument("--backbone", default=None, help="timm 2D backbone (default: the config's)")
    parser.add_argument("--weights", default=None, help="2D backbone weights (default: the config's)")
    parser.add_argument("--encoder", nargs="+", default=[], metavar="KEY=VALUE",
                        help="model.encoder_args overrides for both runs, e.g. channels=8 k=8")
    return parser.parse_args(argv)


def overrides(args: argparse.Namespace) -> Dict[str, List[str]]:
    """``key=value`` overrides of the pre-training and probe configs (``common`` goes to both)."""
    common = [f"root_dir={args.root_dir}", f"seed={args.seed}"]
    common += [f"model.encoder_args.{item}" for item in args.encoder]
    if args.points:
        common += [f"num_points={args.points}", f"dataset.common.num_points={args.points}"]
    pretrain = [f"dataset.common.data_dir={Path(args.data) / 'views'}"]
    for key, value in (("epochs", args.epochs), ("batch_size", args.batch_size),
                       ("model.image_backbone.image_size", args.image_size),
                       ("model.image_backbone.name", args.backbone), ("model.image_backbone.weights", args.weights)):
        if value is not None:
            pretrain.append(f"{key}={value}")
    return {"pretrain": common + pretrain, "svm": common + [f"dataset.common.data_dir={Path(args.data) / 'shapes'}"]}


def check_backbone(cfg: Dict[str, Any]) -> None:
    """Build the frozen 2D backbone once, so a missing weights package fails before any long step."""
    from plugin.models.backbones.image_backbones import FrozenImageBackbone

    FrozenImageBackbone(**cfg.model.image_backbone)


def make_shapes(args: argparse.Namespace) -> None:
    """Step 1: the procedural dataset (nothing to do when complete)."""
    status = load_tool("make_shapes").main([
        "--out", str(Path(args.data) / "shapes"), "--per-class-train", str(args.per_class_train),
        "--per-class-test", str(args.per_class_test), "--seed", str(args.seed)])
    if status:
        raise DemoError("generating the procedural shapes failed (see the error above).")


def check_views(views: Path, image_size: int) -> None:
    """Refuse to resume into views rendered at another size (they would mix with the new ones)."""
    meta = views / "meta.json"
    if meta.is_file() and json.loads(meta.read_text()).get("image_size") != image_size:
        raise DemoError(f"{views} holds views of another size than {image_size} px: delete that folder or "
                        f"pass another --data.")


def render(args: argparse.Namespace, image_size: int) -> None:
    """Step 2: the training split's views at ``image_size`` (objects already rendered are skipped)."""
    views = Path(args.data) / "views"
    status = load_tool("render_views").main([
        "--source", "modelnet40_normal_resampled", "--data-dir", str(Path(args.data) / "shapes"),
        "--out", str(views), "--splits", "train", "--image-size", str(image_size)])
    if status:
        raise DemoError("rendering the views failed (see the error above).")


def run_main(cfg_path: Path, extra: List[str], root_dir: str, run_prefix: Optional[str] = None) -> Dict[str, Any]:
    """Run ``tools/main.py --cfg cfg_path extra`` in this process; returns the new run's ``metrics.json``.

    The run folder is ``<root_dir>/<the config's folder name>/<run_prefix>-*``, as ``tools/main.py`` names it;
    ``run_prefix`` is the ``exp`` the run is given (default: the config's stem).
    """
    exp_dir = Path(root_dir) / cfg_path.parent.name
    prefix = run_prefix or cfg_path.stem
    before = set(exp_dir.glob(f"{prefix}-*"))
    if load_tool("main").main(["--cfg", str(cfg_path), *extra]):
        raise DemoError(f"tools/main.py --cfg {cfg_path.relative_to(REPO)} failed (see the error above).")
    (run,) = set(exp_dir.glob(f"{prefix}-*")) - before
    return json.loads((run / "metrics.json").read_text())


def measure_arms(out: Path, settings: Dict[str, Any], arms: Sequence[str],
                 run_arm: Callable[[str], Dict[str, Any]]) -> Dict[str, Any]:
    """Measure the ``arms`` of a comparison not yet in the result JSON ``out``; returns ``{"settings", "arms"}``.

    ``out`` is resumed when it was written with the same ``settings`` (its arms are kept, and each arm it holds
    is skipped), else started anew. Each arm measured is timed (its record's ``seconds``) and written to ``out``
    at once, atomically, so an interrupted comparison keeps what it measured.

    Args:
        out: the result JSON.
        settings: what the figures depend on; another value measures every arm again.
        arms: the arm names, in the order to measure them.
        run_arm: measures one arm by name; returns its JSON record (a dict).
    """
    from plugin.io import save_text

    results = json.loads(out.read_text()) if out.is_file() else {}
    if results.get("settings") != settings:
        results = {"settings": settings, "arms": {}}
    for name in arms:
        if name in results["arms"]:
            print(f"{name}: already measured in {out}")
            continue
        started = time.time()
        results["arms"][name] = run_arm(name)
        results["arms"][name]["seconds"] = round(time.time() - started, 1)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_text(json.dumps(results, indent=2), str(out), "--out")
    return results


def ruled(lines: Sequence[str], footer: Sequence[str] = ()) -> str:
    """``lines`` as a table: its header ``lines[0]`` between two rules and its body under it, closed by a rule;
    ``footer`` (when given) follows with a rule of its own. Every rule is as wide as the widest line."""
    rule = "-" * max(len(line) for line in [*lines, *footer])
    return "\n".join([rule, lines[0], rule, *lines[1:], rule, *([*footer, rule] if footer else [])])


def table(rows: List[Tuple[str, Dict[str, Any]]], pretrain: Dict[str, Any], seconds: float) -> str:
    """The final report: SVM OA/mAcc (and low-shot OA) of both encoders, the run folders and the total time.

    Args:
        rows: ``(encoder name, metrics.json of its svm run)``, in display order.
        pretrain: ``metrics.json`` of the pre-training run.
        seconds: the demo's wall time so far.
    """
    shots = list(rows[0][1].get("low_shot", {}))
    lines = [f"{'encoder':<24}{'SVM OA':>8}{'SVM mAcc':>10}{'C':>8}"
             + "".join(f"{f'{k}-shot OA':>16}" for k in shots) + "  run folder"]
    for name, m in rows:
        low = "".join(f"{m['low_shot'][k]['oa_mean']:>9.2f} ± {m['low_shot'][k]['oa_std']:<4.1f}" for k in shots)
        lines.append(f"{name:<24}{m['oa']:>8.2f}{m['macc']:>10.2f}{m['C']:>8g}{low}  {m['run_dir']}")
    footer = [f"pre-training: {pretrain['epochs']} epochs, best loss {pretrain['best_loss']:.3f}, "
              f"{pretrain['seconds']:.0f} s, {pretrain['run_dir']}",
              f"total time: {int(seconds // 60)} min {seconds % 60:.0f} s"]
    return ruled(lines, footer)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the demo; returns the exit status (2 with one sentence when a step fails)."""
    started = time.time()
    args = parse_args(argv)
    from plugin.engine import load_config
    from plugin.errors import UserError

    extra = overrides(args)
    try:
        cfg = load_config(str(PRETRAIN_CFG), extra["pretrain"])
        load_config(str(SVM_CFG), extra["svm"])  # fail on a wrong override before any long step
        image_size = int(cfg.model.image_backbone.image_size)
        check_views(Path(args.data) / "views", image_size)
        check_backbone(cfg)
        make_shapes(args)
        render(args, image_size)
        pretrain = run_main(PRETRAIN_CFG, extra["pretrain"], args.root_dir)
        checkpoint = os.path.join(pretrain["run_dir"], "ckpt_best.pth")
        rows = [("Pic@Point pre-trained", run_main(SVM_CFG, extra["svm"] + [f"load_path={checkpoint}"], args.root_dir)),
                ("random init", run_main(SVM_CFG, extra["svm"], args.root_dir))]
    except (UserError, DemoError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(rows, pretrain, time.time() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
