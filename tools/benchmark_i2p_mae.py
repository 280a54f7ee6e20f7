"""I2P-MAE on the CPU (issue 12, Sec. 6): does the 2D teacher help, against "w/o 2D guidance" and random init?

Steps, each skipped when its output is already there (rerun the same command to resume):

1. procedural shapes (``tools/make_shapes.py``) under ``<data>/shapes``;
2. the pre-training folder ``<data>/pretrain``: the procedural training shapes plus the real 3-class ModelNet40
   train split (``../shared/data``), linked into one ``modelnet40_normal_resampled`` layout (train list only);
3. two pre-trainings of the small Point-M2AE of ``cfgs/demo_i2p_mae/`` for the same epochs:
   ``I2P-MAE`` (2D-guided masking and 2D targets from the real ImageNet EfficientNet-Lite0 teacher) and
   ``w/o 2D guidance`` (random masking, 3D targets only, i.e. Point-M2AE);
4. the linear SVM probe (full train split, and 1-shot / 5-shot means of 10 draws) of both exported encoders and
   of a randomly initialised one, on the real 3-class ModelNet40 train (905) / test (170) split; C is chosen
   by cross-validation on the train split only.

Each finished arm is written to ``--out`` (JSON) at once, so an interrupted run keeps what it measured.

Example::

    python tools/benchmark_i2p_mae.py                      # about 45 min on 2 CPU cores
    python tools/benchmark_i2p_mae.py --epochs 1 --per-class-train 1 --limit-real 8   # a smoke run
"""
import argparse
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))
PRETRAIN_CFG = REPO / "cfgs" / "demo_i2p_mae" / "pretrain.yaml"
SVM_CFG = REPO / "cfgs" / "demo_i2p_mae" / "svm.yaml"
REAL = REPO.parent / "shared" / "data" / "modelnet40_normal_resampled"
ARMS = {  # name -> pre-training overrides (None: no pre-training)
    "I2P-MAE": [],
    "w/o 2D guidance": ["model.guided=False", "model.use_2d_targets=False"],
    "random init": None,
}
PROCEDURAL_OFFSET = 5000  # procedural shape n of a class becomes <class>_<5000 + n>, clear of the real ids


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO / "data" / "demo_i2p_mae"), help="folder of shapes/ and pretrain/")
    parser.add_argument("--real", default=str(REAL), help="the real modelnet40_normal_resampled folder")
    parser.add_argument("--root-dir", default=str(REPO / "log"), help="run folders go to <root-dir>/demo_i2p_mae/")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "i2p_mae_cpu.json"), help="result JSON")
    parser.add_argument("--per-class-train", type=int, default=16, help="procedural training shapes per class")
    parser.add_argument("--epochs", type=int, default=8, help="pre-training epochs of both pre-trained arms")
    parser.add_argument("--limit-real", type=int, default=0,
                        help="keep only the first N real train shapes in pre-training (0: all; for smoke runs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shapes and of every run")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides for every run, e.g. model.encoder_args.depths=[1,1,1]")
    return parser.parse_args(argv)


def link_pretraining_set(shapes: Path, real: Path, out: Path, limit_real: int) -> int:
    """Step 2: ``out`` in the ``modelnet40_normal_resampled`` layout, linking the procedural and the real train
    shapes (the real test split is never linked); returns the number of training shapes."""
    names = dict.fromkeys((shapes / "modelnet40_shape_names.txt").read_text().split()
                          + (real / "modelnet40_shape_names.txt").read_text().split())  # labels are not used
    real_ids = (real / "modelnet40_train.txt").read_text().split()
    real_ids = real_ids[:limit_real] if limit_real else real_ids
    links = {f"{i}.txt": real / i.rsplit("_", 1)[0] / f"{i}.txt" for i in real_ids}
    for shape_id in (shapes / "modelnet40_train.txt").read_text().split():
        name, number = shape_id.rsplit("_", 1)
        links[f"{name}_{PROCEDURAL_OFFSET + int(number):04d}.txt"] = shapes / name / f"{shape_id}.txt"
    for file, target in links.items():
        link = out / file.rsplit("_", 1)[0] / file
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(target.resolve())
    (out / "modelnet40_shape_names.txt").write_text("".join(f"{name}\n" for name in names))
    (out / "modelnet40_train.txt").write_text("".join(f"{file[:-4]}\n" for file in sorted(links)))
    return len(links)


def arm_result(name: str, pre: Optional[List[str]], args: argparse.Namespace) -> Dict[str, Any]:
    """Pre-train one arm (unless ``pre`` is None) and probe its encoder; the arm's JSON record."""
    run_main = __import__("demo").run_main
    common = [f"root_dir={args.root_dir}", f"seed={args.seed}", *args.overrides]
    record: Dict[str, Any] = {}
    load = []
    if pre is not None:
        pretrain = run_main(PRETRAIN_CFG, common + pre + [
            f"epochs={args.epochs}", f"dataset.common.data_dir={Path(args.data) / 'pretrain'}"], args.root_dir)
        record["pretrain"] = {k: pretrain[k] for k in ("epochs", "best_loss", "seconds", "run_dir") if k in pretrain}
        load = [f"load_path={os.path.join(pretrain['run_dir'], 'ckpt_best.pth')}"]
    svm = run_main(SVM_CFG, common + [f"dataset.common.data_dir={args.real}"] + load, args.root_dir)
    record["svm"] = {k: svm[k] for k in ("oa", "macc", "C", "low_shot", "run_dir") if k in svm}
    return record


def table(results: Dict[str, Any]) -> str:
    """The arms' SVM OA / mAcc, low-shot OA and pre-training time, one line each."""
    lines = [f"{'encoder':<18}{'SVM OA':>8}{'mAcc':>8}{'C':>6}{'1-shot OA':>15}{'5-shot OA':>15}"
             f"{'pre-train':>12}{'loss':>8}"]
    for name, r in results["arms"].items():
        low = r["svm"].get("low_shot", {})
        shots = "".join(f"{low[k]['oa_mean']:>9.2f} ± {low[k]['oa_std']:<3.1f}" if k in low else f"{'-':>15}"
                        for k in ("1", "5"))
        pre = r.get("pretrain")
        timing = f"{pre['seconds'] / 60:>9.1f} min{pre['best_loss']:>8.3f}" if pre else f"{'-':>12}{'-':>8}"
        lines.append(f"{name:<18}{r['svm']['oa']:>8.2f}{r['svm']['macc']:>8.2f}{r['svm']['C']:>6g}{shots}{timing}")
    return __import__("demo").ruled(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the comparison; returns the exit status (2 with one sentence when a step fails)."""
    args = parse_args(argv)
    from plugin.engine import load_config
    from plugin.errors import UserError

    demo = __import__("demo")
    out = Path(args.out)
    try:
        if not (Path(args.real) / "modelnet40_train.txt").is_file():
            raise UserError(f"The real ModelNet40 folder '{args.real}' has no modelnet40_train.txt: pass --real "
                            f"<modelnet40_normal_resampled folder>.")
        for arm in ARMS.values():  # fail on a wrong override before any long step
            load_config(str(PRETRAIN_CFG), [*args.overrides, *(arm or [])])
        load_config(str(SVM_CFG), args.overrides)
        status = demo.load_tool("make_shapes").main([
            "--out", str(Path(args.data) / "shapes"), "--per-class-train", str(args.per_class_train),
            "--per-class-test", "1", "--seed", str(args.seed)])
        if status:
            raise UserError("generating the procedural shapes failed (see the error above).")
        shapes = link_pretraining_set(Path(args.data) / "shapes", Path(args.real), Path(args.data) / "pretrain",
                                      args.limit_real)
        settings = {"epochs": args.epochs, "pretraining_shapes": shapes, "seed": args.seed,
                    "overrides": args.overrides, "teacher": "tf_efficientnet_lite0 (ImageNet, offline package)"}
        results = demo.measure_arms(out, settings, list(ARMS), lambda name: arm_result(name, ARMS[name], args))
    except (UserError, demo.DemoError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(results))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
