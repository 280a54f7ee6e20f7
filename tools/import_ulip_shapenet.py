"""Import ULIP's ShapeNet-55 triplets into the rendered-views folder format that ``ClipTriplets`` reads.

ULIP's layout is documented in :mod:`plugin.datasets.ulip_shapenet` (``shapenet_pc/<synset>-<model>.npy``,
``rendered_images/<synset>-<model>/<synset>-<model>_r_<DDD>[_depth0001].png`` for 30 views 12 degrees apart,
``train.txt``/``test.txt``, ``taxonomy.json``). For each object of ``--splits`` this writes::

    <out>/<synset>-<model>/view_00.png ...  symbolic links to ULIP's renders (absolute targets), view k at
                                            azimuth meta.json ``view_angles_deg[k]``
    <out>/<synset>-<model>/points.npy       (N, 3) float32 xyz centred and scaled into the unit sphere
                                            (``center_and_scale``), written last, so it marks a finished object
    <out>/meta.json                         classes (synset names, label order), synsets (their ids), views,
                                            view angles, render type, point count, the source folders
    <out>/train.txt, test.txt               ``<object_id> <label>`` lines, written when the split is finished

No ``cameras.npz`` is written (ULIP publishes no camera matrices): ``ClipTriplets`` reads this folder,
``RenderedViews`` (which needs cameras) does not. The run shows a progress bar and resumes: objects whose
``points.npy`` exists are skipped. Rerunning into the same ``--out`` with other settings is refused
(``--overwrite`` rewrites every object). Bad input (a missing folder or file, an unreadable cloud, an
unwritable ``--out``) is one sentence with exit status 2; ``--skip-incomplete`` leaves objects with a missing
or unusable file out of the split lists instead (listed in ``<out>/skipped.txt``).

Example::

    python tools/import_ulip_shapenet.py --data-dir data/shapenet-55 --out data/views/ulip_shapenet
    python tools/import_ulip_shapenet.py --data-dir data/shapenet-55 --images data/only_rgb_depth_images \\
        --out data/views/ulip_shapenet12 --views 12 --num-points 2048 --kind rgb
"""
import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SOURCE = "ulip_shapenet55"
# meta.json keys that must match for a rerun to resume into the same --out, with the option that sets each
SETTINGS = {"source": None, "image_kind": "--kind", "views": "--views", "num_points": "--num-points"}


def check_args(args: argparse.Namespace) -> Optional[str]:
    """One sentence about the first out-of-range option of ``args``, or None when all are usable.

    Args:
        args: the parsed command line.
    """
    from plugin.datasets.ulip_shapenet import ULIP_VIEWS

    if not 1 <= args.views <= ULIP_VIEWS:
        return f"--views is {args.views}: pass 1 to {ULIP_VIEWS} (ULIP renders {ULIP_VIEWS} views per object)."
    for option, value in (("--num-points", args.num_points), ("--limit", args.limit)):
        if value is not None and value < 1:
            return f"{option} is {value}: pass an integer >= 1."
    return None


def link(target: Path, path: Path) -> None:
    """Make ``path`` a symbolic link to ``target`` atomically (a link left by a killed run is replaced)."""
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, path)


def import_object(source, object_id: str, out: Path, angles: List[int], kind: str,
                  num_points: Optional[int]) -> None:
    """Link one object's views and write its normalised points (last) into ``out/<object_id>``.

    Args:
        source: the :class:`~plugin.datasets.ulip_shapenet.UlipShapeNet` folder.
        object_id: ``<synset>-<model>``.
        out: the output folder.
        angles: azimuths of the views to link, view k at ``angles[k]``.
        kind: ``rgb`` or ``depth`` renders.
        num_points: farthest-point-sample the cloud to this many points; None keeps all.

    Raises:
        DataNotFoundError: a render or the point file is missing.
        BadInputError: the point file is unusable.
    """
    from plugin.datasets.rendered_views import center_and_scale
    from plugin.errors import DataNotFoundError
    from plugin.io import save_npy, writing

    views = [source.view_path(object_id, angle, kind) for angle in angles]
    missing = [path for path in views if not path.is_file()]
    if missing:
        raise DataNotFoundError(f"{missing[0]} is missing ({len(missing)} of the object's views): complete the "
                                f"render download, or pass --skip-incomplete to leave such objects out.")
    points = center_and_scale(source.points(object_id, num_points))[0]
    folder = out / object_id
    with writing(str(folder), "--out"):
        folder.mkdir(parents=True, exist_ok=True)
        names = [f"view_{k:02d}.png" for k in range(len(views))]
        for stale in folder.glob("view_*.png"):  # views of an earlier import with more --views
            if stale.name not in names:
                stale.unlink()
        for name, path in zip(names, views):
            link(path.resolve(), folder / name)
    save_npy(points.astype("float32"), str(folder / "points.npy"), "--out")


def main(argv: Optional[List[str]] = None) -> int:
    """Parse ``argv``, import and return the exit status (2 with one sentence on a user error).

    Args:
        argv: the command line without the program name (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="ULIP's shapenet-55 folder (shapenet_pc/, train.txt, ...)")
    parser.add_argument("--images", default=None,
                        help="the render folder (default: rendered_images or only_rgb_depth_images in --data-dir)")
    parser.add_argument("--out", required=True, help="output folder (resumable)")
    parser.add_argument("--splits", nargs="+", choices=("train", "test"), default=["train", "test"])
    parser.add_argument("--kind", choices=("rgb", "depth"), default="rgb", help="which renders to link")
    parser.add_argument("--views", type=int, default=30, help="views per object, spread evenly over ULIP's 30")
    parser.add_argument("--num-points", type=int, default=None, help="farthest-point-sample each cloud (default: all)")
    parser.add_argument("--synset-names", default=None,
                        help="JSON of synset id -> class name (default: taxonomy.json's first names)")
    parser.add_argument("--limit", type=int, default=None, help="import at most this many objects per split")
    parser.add_argument("--skip-incomplete", action="store_true",
                        help="leave objects with a missing or unusable file out of the split lists")
    parser.add_argument("--overwrite", action="store_true", help="import every object again")
    args = parser.parse_args(argv)

    from plugin.errors import UserError

    problem = check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        done, skipped = run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{done} objects imported into {args.out}" + (f", {skipped} left out (skipped.txt)" if skipped else ""))
    return 0


def run(args: argparse.Namespace) -> Tuple[int, int]:
    """Import the objects of ``args`` not imported yet; returns the counts imported now and left out.

    Args:
        args: the parsed and checked command line.

    Raises:
        UserError: a missing or unusable source, settings that differ from ``--out``'s, or an unwritable ``--out``.
    """
    from tqdm import tqdm

    from plugin.datasets.ulip_shapenet import UlipShapeNet, view_angles
    from plugin.errors import BadInputError, ConfigError, DataNotFoundError
    from plugin.io import save_json, save_text, settings_conflict, writing

    settings = {"source": SOURCE, "image_kind": args.kind, "views": args.views, "num_points": args.num_points}
    out = Path(args.out)
    # a setting meta.json does not record counts as None (no source: another dataset; no num_points: all points)
    conflict = None if args.overwrite else settings_conflict(
        out, settings, SETTINGS, "objects imported", "--overwrite to import every object again",
        prepare=lambda meta: {**dict.fromkeys(SETTINGS), **meta})
    if conflict:
        raise ConfigError(conflict)
    source = UlipShapeNet(args.data_dir, args.images, args.synset_names)
    angles = view_angles(args.views)
    with writing(str(out), "--out"):
        out.mkdir(parents=True, exist_ok=True)
        if args.overwrite:  # first forget every finished object, so a killed re-import resumes correctly
            for finished in out.glob("*/points.npy"):
                finished.unlink()
    save_json({**settings, "classes": source.classes, "synsets": source.synsets, "view_angles_deg": angles,
               "data_dir": str(source.root.resolve()), "images": str(source.images.resolve())},
              str(out / "meta.json"), "--out")
    done, skipped = 0, []
    for split in args.splits:
        objects = source.objects(split)[:args.limit]
        kept = []
        for object_id, label in tqdm(objects, desc=f"import {split}", unit="object"):
            if not (out / object_id / "points.npy").is_file():
                try:
                    import_object(source, object_id, out, angles, args.kind, args.num_points)
                    done += 1
                except (DataNotFoundError, BadInputError):  # an unwritable --out is never skipped
                    if not args.skip_incomplete:
                        raise
                    skipped.append(object_id)
                    continue
            kept.append((object_id, label))
        save_text("".join(f"{o} {y}\n" for o, y in kept), str(out / f"{split}.txt"), "--out")
    if skipped:
        save_text("".join(f"{o}\n" for o in skipped), str(out / "skipped.txt"), "--out")
    return done, len(skipped)


if __name__ == "__main__":
    sys.exit(main())
