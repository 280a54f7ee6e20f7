"""Render the pre-training views of a point dataset into the format of ``plugin.datasets.rendered_views``.

Each object is centred and scaled into the unit sphere, then rendered from the cameras of
``--view-set`` (Lambert shading when the source has normals, depth shading otherwise):
``dodecahedron20``, Pic@Point's 20 dodecahedron cameras (the default), or ``orthogonal_corner10``,
CLIP2Point's 10 cameras (6 orthogonal + 4 upper corners), from which CLIP2Point renders the depth map
paired with each RGB view. The run shows a progress bar, works on several objects in parallel, and
resumes: objects whose ``cameras.npz`` exists are skipped (it is written last, atomically).

``meta.json`` records the settings (source, view set, image size, splat radius, point count, camera
distance and field of view). Rerunning into the same ``--out`` with other settings is refused, since
the old objects would stay and mix with new ones; ``--overwrite`` re-renders every object instead. A
refused write (``--out`` a regular file, read-only, or a full disk) is one sentence with exit status 2.

Examples::

    python tools/render_views.py --source modelnet40_normal_resampled \\
        --data-dir ../shared/data/modelnet40_normal_resampled --out data/views/modelnet40
    python tools/render_views.py --source modelnet40_ply_hdf5_2048 --data-dir data/modelnet40_ply_hdf5_2048 --out ...
    python tools/render_views.py --source shapenet55 --data-dir data/ShapeNet55-34 --out data/views/shapenet \
        --synset-names data/shapenet_synset_dict.json

ShapeNet-55 objects are read in the workers one at a time (the split does not fit in memory) and
farthest-point-sampled to ``--num-points``; they have no normals, so their views are depth shaded.
"""
import argparse
import multiprocessing as mp
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SOURCES = ("modelnet40_normal_resampled", "modelnet40_ply_hdf5_2048", "shapenet55")
VIEW_SETS = ("dodecahedron20", "orthogonal_corner10")
DEFAULT_VIEW_SET = "dodecahedron20"
LEGACY_VIEW_SETS = {"dodecahedron": DEFAULT_VIEW_SET}  # meta.json of renders made before --view-set
# meta.json keys that must match for a rerun to resume into the same --out, with the option that sets each
SETTINGS = {"source": "--source", "view_set": "--view-set", "image_size": "--image-size",
            "radius_px": "--radius-px", "num_points": "--num-points", "distance": "--distance", "fov": "--fov"}


def load_source(source: str, data_dir: str, split: str, num_points: int, synset_names: str = None):
    """``(objects, labels (S,), classes, object ids)`` of one split of a point dataset.

    An object is its (N, 3|6) points, or for ShapeNet-55 the path of its ``.npy`` file.
    """
    from plugin.datasets import ModelNet40NormalResampled, ModelNet40Ply2048
    from plugin.datasets.shapenet55 import read_shapenet55_split

    if source == "shapenet55":
        paths, labels, classes, ids = read_shapenet55_split(data_dir, split, synset_names)
        return [str(p) for p in paths], labels, classes, ids
    cls = ModelNet40NormalResampled if source == "modelnet40_normal_resampled" else ModelNet40Ply2048
    data = cls(data_dir, split=split, num_points=num_points, use_normals=True)
    points = np.concatenate([data.points, data.normals], axis=2)
    ids = [f"{split}_{i:05d}" for i in range(len(points))]
    return points, data.labels, list(data.classes), ids


def normalise(points: np.ndarray) -> np.ndarray:
    """Centre xyz at the origin and scale it into the unit sphere (the function the SVM probe applies too,
    ``plugin.datasets.rendered_views.center_and_scale``); normals are kept."""
    from plugin.datasets.rendered_views import center_and_scale

    out = points.astype(np.float32).copy()
    out[:, :3] = center_and_scale(out[:, :3])[0]
    return out


def cameras(view_set: str, distance: float, fov: float):
    """``(view, proj)``, each (V, 4, 4), of the named view set.

    Args:
        view_set: one of :data:`VIEW_SETS`.
        distance: camera distance from the origin.
        fov: field of view in degrees.
    """
    from plugin.render import view_sets

    make = {"dodecahedron20": view_sets.dodecahedron_views,
            "orthogonal_corner10": view_sets.orthogonal_and_corner_views}[view_set]
    return make(distance=distance, fov_deg=fov)


def render_object(job: Tuple[str, Union[np.ndarray, str], dict]) -> str:
    """Render one object (its points, or a ShapeNet-55 ``.npy`` path) into ``<out>/<object_id>/``; returns its id.

    Args:
        job: ``(folder, points, opts)``; ``opts`` holds ``image_size``, ``radius_px``, ``distance``, ``fov``,
            ``num_points`` (ShapeNet-55) and ``view_set`` (default ``dodecahedron20``).
    """
    import torch

    from plugin.datasets.shapenet55 import load_shapenet55_cloud
    from plugin.io import save_npz, writing
    from plugin.render.point_renderer import render_points, save_png

    torch.set_num_threads(1)
    folder, points, opts = job
    if isinstance(points, str):
        points = load_shapenet55_cloud(Path(points), opts["num_points"])
    points = normalise(points)
    view, proj = cameras(opts.get("view_set", DEFAULT_VIEW_SET), opts["distance"], opts["fov"])
    cloud = torch.from_numpy(points).unsqueeze(0).expand(len(view), -1, -1)
    normals = cloud[..., 3:6].contiguous() if points.shape[1] >= 6 else None
    images, _ = render_points(cloud[..., :3].contiguous(), view, proj, normals=normals,
                              image_size=opts["image_size"], radius_px=opts["radius_px"])
    folder = Path(folder)
    with writing(str(folder), "--out"):
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("view_*.png"):  # of an earlier render with more views (--overwrite)
            stale.unlink()
        np.save(folder / "points.npy", points)
        for v, image in enumerate(images):
            save_png(image, folder / f"view_{v:02d}.png")
        save_npz(str(folder / "cameras.npz"), "--out", view=view.numpy(), proj=proj.numpy())
    return folder.name


def check_args(args: argparse.Namespace) -> Optional[str]:
    """One sentence about the first out-of-range option of ``args``, or None when all are usable.

    Args:
        args: the parsed command line.
    """
    counts = {"--image-size": (args.image_size, 1), "--radius-px": (args.radius_px, 0),
              "--num-points": (args.num_points, 1), "--workers": (args.workers, 1), "--limit": (args.limit, 1)}
    for option, (value, minimum) in counts.items():
        if value is not None and value < minimum:
            return f"{option} is {value}: pass an integer >= {minimum}."
    if args.distance is not None and not args.distance > 0:
        return f"--distance is {args.distance}: pass a camera distance > 0 (default: the view set's 2.2)."
    if args.fov is not None and not 0 < args.fov < 180:
        return f"--fov is {args.fov}: pass a field of view between 0 and 180 degrees (default: 60)."
    return None


def recorded_settings(meta: Dict[str, Any]) -> Dict[str, Any]:
    """``meta.json``'s dict with the view set of renders made before ``--view-set`` named as today's."""
    return dict(meta, view_set=LEGACY_VIEW_SETS.get(meta.get("view_set"), meta.get("view_set")))


def main(argv: Optional[List[str]] = None) -> int:
    """Parse ``argv``, render and return the exit status (2 with one sentence on a user error).

    Args:
        argv: the command line without the program name (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=SOURCES, required=True, help="format of --data-dir")
    parser.add_argument("--data-dir", required=True, help="the source dataset folder")
    parser.add_argument("--out", required=True, help="output folder (resumable)")
    parser.add_argument("--splits", nargs="+", default=["train", "test"])
    parser.add_argument("--num-points", type=int, default=2048, help="points kept per object")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--radius-px", type=int, default=1, help="splat radius in pixels")
    parser.add_argument("--distance", type=float, default=None, help="camera distance (default: view set's)")
    parser.add_argument("--fov", type=float, default=None, help="field of view in degrees (default: view set's)")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)), help="parallel objects")
    parser.add_argument("--limit", type=int, default=None, help="render at most this many objects per split")
    parser.add_argument("--synset-names", default=None, help="shapenet55: JSON of synset id -> class name")
    parser.add_argument("--view-set", choices=VIEW_SETS, default=DEFAULT_VIEW_SET,
                        help="cameras: dodecahedron20 (Pic@Point, default) or orthogonal_corner10 (CLIP2Point)")
    parser.add_argument("--overwrite", action="store_true",
                        help="re-render every object, e.g. after changing a setting recorded in meta.json")
    args = parser.parse_args(argv)

    from plugin.errors import UserError

    problem = check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        count = render(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{count} objects rendered into {args.out}")
    return 0


def render(args: argparse.Namespace) -> int:
    """Render the objects of ``args`` not rendered yet (all of them with ``--overwrite``); returns their count.

    Args:
        args: the parsed and checked command line.

    Raises:
        UserError: unreadable source data, settings that differ from ``--out``'s, or an unwritable ``--out``.
    """
    from tqdm import tqdm

    from plugin.io import save_json, save_text, settings_conflict, writing
    from plugin.errors import ConfigError
    from plugin.render import view_sets

    opts = {"image_size": args.image_size, "radius_px": args.radius_px, "num_points": args.num_points,
            "distance": args.distance or view_sets.DEFAULT_DISTANCE, "fov": args.fov or view_sets.DEFAULT_FOV_DEG,
            "view_set": args.view_set}
    out = Path(args.out)
    conflict = None if args.overwrite else settings_conflict(
        out, {"source": args.source, **opts}, SETTINGS, "views rendered", "--overwrite to re-render every object",
        prepare=recorded_settings)
    if conflict:
        raise ConfigError(conflict)
    splits, classes = {}, []
    for split in args.splits:
        points, labels, classes, ids = load_source(args.source, args.data_dir, split, args.num_points,
                                                  args.synset_names)
        splits[split] = (points[:args.limit], labels[:args.limit], ids[:args.limit])
    with writing(str(out), "--out"):
        out.mkdir(parents=True, exist_ok=True)
        if args.overwrite:  # first forget every finished object, so a killed re-render resumes correctly
            for done in out.glob("*/cameras.npz"):
                done.unlink()
        jobs = []
        for split, (points, labels, ids) in splits.items():
            save_text("".join(f"{o} {int(y)}\n" for o, y in zip(ids, labels)), str(out / f"{split}.txt"), "--out")
            jobs += [(str(out / o), p, opts) for o, p in zip(ids, points) if not (out / o / "cameras.npz").is_file()]
        views = len(cameras(args.view_set, opts["distance"], opts["fov"])[0])
        save_json({"source": args.source, "classes": classes, "views": views, **opts}, str(out / "meta.json"), "--out")
        with tqdm(total=len(jobs), desc="render", unit="object") as bar:
            if args.workers == 1:
                for job in jobs:
                    render_object(job)
                    bar.update()
            else:
                with mp.get_context("spawn").Pool(args.workers) as pool:
                    for _ in pool.imap_unordered(render_object, jobs):
                        bar.update()
    return len(jobs)


if __name__ == "__main__":
    sys.exit(main())
