"""Render the pre-training views of a point dataset into the format of ``plugin.datasets.rendered_views``.

Each object is centred and scaled into the unit sphere, then rendered from the 20 dodecahedron
cameras (Lambert shading when the source has normals, depth shading otherwise). The run shows a
progress bar, works on several objects in parallel, and resumes: objects whose ``cameras.npz``
exists are skipped (it is written last, atomically).

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
import json
import multiprocessing as mp
import os
import sys
from pathlib import Path
from typing import List, Tuple, Union

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SOURCES = ("modelnet40_normal_resampled", "modelnet40_ply_hdf5_2048", "shapenet55")


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


def render_object(job: Tuple[str, Union[np.ndarray, str], dict]) -> str:
    """Render one object (its points, or a ShapeNet-55 ``.npy`` path) into ``<out>/<object_id>/``; returns its id."""
    import torch

    from plugin.datasets.shapenet55 import load_shapenet55_cloud
    from plugin.engine.atomic_io import save_npz
    from plugin.render.point_renderer import render_points, save_png
    from plugin.render.view_sets import dodecahedron_views

    torch.set_num_threads(1)
    folder, points, opts = job
    if isinstance(points, str):
        points = load_shapenet55_cloud(Path(points), opts["num_points"])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    points = normalise(points)
    np.save(folder / "points.npy", points)
    view, proj = dodecahedron_views(distance=opts["distance"], fov_deg=opts["fov"])
    cloud = torch.from_numpy(points).unsqueeze(0).expand(len(view), -1, -1)
    normals = cloud[..., 3:6].contiguous() if points.shape[1] >= 6 else None
    images, _ = render_points(cloud[..., :3].contiguous(), view, proj, normals=normals,
                              image_size=opts["image_size"], radius_px=opts["radius_px"])
    for v, image in enumerate(images):
        save_png(image, folder / f"view_{v:02d}.png")
    save_npz(str(folder / "cameras.npz"), view=view.numpy(), proj=proj.numpy())
    return folder.name


def main(argv: List[str] = None) -> int:
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
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from plugin.errors import UserError
    from plugin.render import view_sets

    opts = {"image_size": args.image_size, "radius_px": args.radius_px, "num_points": args.num_points,
            "distance": args.distance or view_sets.DEFAULT_DISTANCE, "fov": args.fov or view_sets.DEFAULT_FOV_DEG}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs, classes = [], []
    try:
        for split in args.splits:
            points, labels, classes, ids = load_source(args.source, args.data_dir, split, args.num_points,
                                                      args.synset_names)
            points, labels, ids = points[:args.limit], labels[:args.limit], ids[:args.limit]
            (out / f"{split}.txt").write_text("".join(f"{o} {int(y)}\n" for o, y in zip(ids, labels)))
            jobs += [(str(out / o), p, opts) for o, p in zip(ids, points) if not (out / o / "cameras.npz").is_file()]
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    (out / "meta.json").write_text(json.dumps({"source": args.source, "classes": classes, "views": 20,
                                               "view_set": "dodecahedron", **opts}, indent=2))
    bar = tqdm(total=len(jobs), desc="render", unit="object")
    if args.workers == 1:
        for job in jobs:
            render_object(job)
            bar.update()
    else:
        with mp.get_context("spawn").Pool(args.workers) as pool:
            for _ in pool.imap_unordered(render_object, jobs):
                bar.update()
    bar.close()
    print(f"{len(jobs)} objects rendered into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
