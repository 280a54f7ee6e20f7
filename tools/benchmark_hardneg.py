"""Hard negatives on the CPU (issue 13, Sec. 6): do I2I / (I2L)^2 weighted negatives sharpen retrieval?

Steps, each skipped when its output is already there (rerun the same command to resume):

1. rendered views of the real 3-class ModelNet40 (``tools/render_views.py``, CLIP2Point's 10 cameras, 224 px);
2. the similarity store of the train objects with the real ImageNet EfficientNet-Lite0 (6 views, I2I), whose
   embeddings are also the image side of the alignment (``tools/precompute_similarity.py``);
3. an (I2L)^2 store with the random-weight tiny CLIP (no CLIP weights exist here, and Lite0 has no text tower):
   a check that the pipeline runs, not a measurement of the (I2L)^2 similarity;
4. per arm, the alignment pre-training of PointNeXt-S (``cfgs/demo_hardneg/pretrain.yaml``) for the same epochs:
   ``plain`` (W = 1), ``hardneg-i2i``, ``hardneg-i2l2``, and ``random init`` (no pre-training); then image <->
   shape retrieval on the 170 test shapes, the whole test split as gallery (``retrieval.yaml``), and the linear
   SVM probe (full, 1-shot, 5-shot; ``svm.yaml``).

Each finished arm is written to ``--out`` (JSON) at once, so an interrupted run keeps what it measured.

Example::

    python tools/benchmark_hardneg.py                    # about 40 minutes on 2 CPU cores
    python tools/benchmark_hardneg.py --epochs 1 --arms plain hardneg-i2i  # a shorter run
"""
import argparse
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))
CFGS = REPO / "cfgs" / "demo_hardneg"
SHARED = REPO.parent / "shared" / "data"
LITE0 = ["NAME=timm", "name=tf_efficientnet_lite0", "pretrained=efficientnet_lite0_package"]
TINY_CLIP = ["NAME=clip", "name=tiny-clip-test", "pretrained=none"]
VIEWS = 6  # the 6 orthogonal cameras of orthogonal_corner10


def arm_overrides(stores: Dict[str, Path]) -> Dict[str, Optional[List[str]]]:
    """Arm name -> pre-training overrides (None: no pre-training)."""
    return {
        "random init": None,
        "plain": ["model.objective=plain"],
        "hardneg-i2i": ["model.objective=hardneg", "model.similarity.kind=i2i"],
        "hardneg-i2l2": ["model.objective=hardneg", "model.similarity.kind=i2l2",
                         f"model.similarity.dir={stores['i2l2']}"],
    }


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", default=str(SHARED / "modelnet40_normal_resampled"),
                        help="the real modelnet40_normal_resampled folder")
    parser.add_argument("--landmarks", default=str(SHARED / "text" / "nocaptions_shapenet_landmarks.json"),
                        help="No Captions' landmark texts (the (I2L)^2 arm)")
    parser.add_argument("--views-dir", default=str(REPO / "data" / "views" / "modelnet40_3class"))
    parser.add_argument("--store-dir", default=str(REPO / "data" / "similarity"), help="the stores go here")
    parser.add_argument("--root-dir", default=str(REPO / "log"), help="run folders go to <root-dir>/demo_hardneg/")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "hardneg_cpu.json"), help="result JSON")
    parser.add_argument("--epochs", type=int, default=8, help="pre-training epochs of every pre-trained arm")
    parser.add_argument("--arms", nargs="+", default=None, help="the arms to run (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace) -> Dict[str, Path]:
    """Steps 1-3: the views and both stores; returns the stores by kind."""
    from plugin.clip import SimilarityStore
    from plugin.errors import UserError

    demo = __import__("demo")
    if demo.load_tool("render_views").main([
            "--source", "modelnet40_normal_resampled", "--data-dir", args.real, "--out", args.views_dir,
            "--splits", "train", "test", "--view-set", "orthogonal_corner10", "--image-size", "224"]):
        raise UserError("rendering the views failed (see the error above).")
    stores = {"i2i": Path(args.store_dir) / "modelnet40_3class_lite0",
              "i2l2": Path(args.store_dir) / "modelnet40_3class_tinyclip"}
    precompute = demo.load_tool("precompute_similarity").main
    common = ["--data", args.views_dir, "--split", "train", "--views", str(VIEWS)]
    if precompute([*common, "--out", str(stores["i2i"]), "--kinds", "i2i", "--encoder", *LITE0]):
        raise UserError("the Lite0 similarity store failed (see the error above).")
    if precompute([*common, "--out", str(stores["i2l2"]), "--kinds", "i2l2", "--landmarks", args.landmarks,
                   "--encoder", *TINY_CLIP]):
        raise UserError("the tiny-CLIP (I2L)^2 store failed (see the error above).")
    lite0, tiny = (SimilarityStore.open(str(stores[k]), "--store-dir") for k in ("i2i", "i2l2"))
    if lite0.categories != tiny.categories or any(lite0.ids(c) != tiny.ids(c) for c in lite0.categories):
        raise UserError(f"{stores['i2i']} and {stores['i2l2']} hold other objects: delete both and rerun.")
    return stores


def arm_result(pre: Optional[List[str]], args: argparse.Namespace, stores: Dict[str, Path]) -> Dict[str, Any]:
    """Pre-train one arm (unless ``pre`` is None), then its retrieval and SVM figures."""
    run_main = __import__("demo").run_main
    common = [f"root_dir={args.root_dir}", f"seed={args.seed}", f"dataset.common.data_dir={args.views_dir}",
              *args.overrides]
    record: Dict[str, Any] = {}
    checkpoint = None
    if pre is not None:
        pretrain = run_main(CFGS / "pretrain.yaml", common + [
            f"epochs={args.epochs}", f"dataset.common.store={stores['i2i']}",
            f"model.similarity.dir={stores['i2i']}", *pre], args.root_dir)
        record["pretrain"] = {k: pretrain[k] for k in ("epochs", "best_loss", "seconds", "run_dir") if k in pretrain}
        checkpoint = os.path.join(pretrain["run_dir"], "ckpt_best.pth")
    retrieval = run_main(CFGS / "retrieval.yaml", common + ([f"pretrained_path={checkpoint}"] if checkpoint else []),
                         args.root_dir)
    record["retrieval"] = {k: v for k, v in retrieval.items() if k.startswith(("i2s_", "s2i_")) or k == "run_dir"}
    svm_common = [c for c in common if not c.startswith("dataset.common.data_dir=")]
    svm = run_main(CFGS / "svm.yaml", svm_common + [f"dataset.common.data_dir={args.real}"]
                   + ([f"load_path={checkpoint}"] if checkpoint else []), args.root_dir)
    record["svm"] = {k: svm[k] for k in ("oa", "macc", "C", "low_shot", "run_dir") if k in svm}
    return record


def table(results: Dict[str, Any]) -> str:
    """Retrieval (image->shape, shape->image), SVM and pre-training figures of the arms, one line each."""
    lines = [f"{'arm':<14}{'I->S top1':>10}{'top5':>7}{'mAP':>7}{'S->I top1':>10}{'top5':>7}{'mAP':>7}"
             f"{'SVM OA':>8}{'1-shot':>8}{'5-shot':>8}{'pre-train':>11}{'loss':>7}"]
    for name, r in results["arms"].items():
        ret, svm, pre = r["retrieval"], r["svm"], r.get("pretrain")
        low = svm.get("low_shot", {})
        shots = "".join(f"{low[k]['oa_mean']:>8.2f}" if k in low else f"{'-':>8}" for k in ("1", "5"))
        timing = f"{pre['seconds'] / 60:>7.1f} min{pre['best_loss']:>7.3f}" if pre else f"{'-':>11}{'-':>7}"
        lines.append(f"{name:<14}{ret['i2s_top1']:>10.2f}{ret['i2s_top5']:>7.2f}{ret['i2s_map']:>7.2f}"
                     f"{ret['s2i_top1']:>10.2f}{ret['s2i_top5']:>7.2f}{ret['s2i_map']:>7.2f}{svm['oa']:>8.2f}{shots}"
                     f"{timing}")
    return __import__("demo").ruled(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the comparison; returns the exit status (2 with one sentence when a step fails)."""
    args = parse_args(argv)
    from plugin.engine import load_config
    from plugin.errors import UserError

    demo = __import__("demo")
    out = Path(args.out)
    try:
        for path, what in ((Path(args.real) / "modelnet40_train.txt", "--real"), (Path(args.landmarks), "--landmarks")):
            if not path.is_file():
                raise UserError(f"'{path}' not found: pass {what} <path>.")
        arms = arm_overrides({"i2l2": Path(args.store_dir) / "modelnet40_3class_tinyclip"})
        unknown = sorted(set(args.arms or ()) - set(arms))
        if unknown:
            raise UserError(f"Unknown arm(s) {', '.join(unknown)}: use --arms with {', '.join(arms)}.")
        # fail on a wrong override before any long step
        num_points = [load_config(str(CFGS / f"{cfg}.yaml"), args.overrides).num_points
                      for cfg in ("pretrain", "retrieval")][0]
        stores = prepare(args)
        arms = arm_overrides(stores)
        settings = {"epochs": args.epochs, "views": VIEWS, "num_points": num_points, "seed": args.seed,
                    "overrides": args.overrides,
                    "image_encoder": "tf_efficientnet_lite0 (ImageNet, offline package)",
                    "i2l2_similarity": "tiny-clip-test, random weights (pipeline check)"}
        results = demo.measure_arms(out, settings, args.arms or list(arms),
                                    lambda name: arm_result(arms[name], args, stores))
    except (UserError, demo.DemoError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(results))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
