"""Generate the procedural shape dataset in the ``modelnet40_normal_resampled`` layout.

19 classes of parametric objects (box, cylinder, cone, sphere, torus, table, chair, stool, bench, desk,
bookshelf, sofa, lamp, bottle, vase, cup, bowl, mug, bed) with outward normals, each instance with its own
proportions, pose and sampling (:mod:`plugin.datasets.procedural_shapes`). The output reads with
``ModelNet40NormalResampled`` (default ``num_classes: 40``) and ``tools/render_views.py --source
modelnet40_normal_resampled``.
Rerunning with the same settings does nothing; an interrupted run is completed. An unwritable ``--out`` (a
regular file, read-only, a full disk) is one sentence with exit status 2.

Example::

    python tools/make_shapes.py --out data/shapes --per-class-train 40 --per-class-test 20 --points 2048
"""
import argparse
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: Optional[List[str]] = None) -> int:
    """Parse ``argv``, write the dataset and return the exit status (2 with one sentence on a user error)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (the modelnet40_normal_resampled layout)")
    parser.add_argument("--per-class-train", type=int, default=40, help="training shapes per class")
    parser.add_argument("--per-class-test", type=int, default=20, help="test shapes per class")
    parser.add_argument("--points", type=int, default=2048, help="points per shape")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tilt", type=float, default=0.0, help="largest tilt away from +Y up, in degrees")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from plugin.datasets.procedural_shapes import CLASSES, write_dataset
    from plugin.io import writing
    from plugin.errors import UserError

    try:
        with writing(args.out, "--out"):
            written = write_dataset(args.out, args.per_class_train, args.per_class_test, args.points, args.seed,
                                    args.max_tilt, progress=lambda todo: tqdm(todo, desc="shapes", unit="shape"))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    total = len(CLASSES) * (args.per_class_train + args.per_class_test)
    print(f"{args.out}: {total} shapes of {len(CLASSES)} classes "
          + (f"({written} written)" if written else "(complete, nothing to do)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
