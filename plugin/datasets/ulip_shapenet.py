"""ULIP's published ShapeNet-55 triplets ("ULIP - ShapeNet Triplets"): points, 30 rendered views, category.

Layout, as ULIP reads it (salesforce/ULIP: ``data/dataset_3d.py`` class ``ShapeNet``, ``data/ShapeNet-55.yaml``
with ``DATA_PATH: data/shapenet-55``, ``PC_PATH: data/shapenet-55/shapenet_pc``, ``IMAGE_PATH:
data/shapenet-55/rendered_images``, and the README; file names confirmed in the repository's issues #7, #18
and #54)::

    <data_dir>/                               ULIP's DATA_PATH, the downloaded ``shapenet-55`` folder
      taxonomy.json                           ShapeNetCore's taxonomy: a list of {"synsetId": "02691156",
                                              "name": "airplane,aeroplane,plane", ...}; ULIP's caption of an
                                              object is one of the comma-separated names of its synset
      train.txt, test.txt                     one ``<synset>-<model>.npy`` a line (41952 / 10518 objects, the
                                              ShapeNet-55 lists of Point-BERT; they may also sit in ShapeNet-55/)
      shapenet_pc/<synset>-<model>.npy        (8192, 3) float xyz
      rendered_images/<synset>-<model>/
        <synset>-<model>_r_<DDD>.png          RGB render at azimuth DDD degrees
        <synset>-<model>_r_<DDD>_depth0001.png  depth map of the same view
                                              DDD = 000, 012, ..., 348: 30 views 12 degrees apart (zero-padded
                                              to 3 digits); three further render types per view are unused
      only_rgb_depth_images/                  the smaller download (about 420 GB) holding only the RGB and
                                              depth renders, same file names; read with or without the
                                              per-object folders

ULIP pre-trains on both lists (``whole: True``) with a random view and a random render type per sample.
Here the lists stay apart, so the test list is kept for evaluation, and one render type is read.

Labels index the sorted synset ids of both lists (as :mod:`.shapenet55`), so train and test share one label
space; class names are the first name of each synset in ``taxonomy.json`` (or of a synset -> name JSON).
``tools/import_ulip_shapenet.py`` converts this layout into the ``RenderedViews`` folder format that
:class:`~plugin.datasets.clip_triplets.ClipTriplets` reads.
"""
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import BadInputError, DataNotFoundError
from .rendered_views import farthest_points
from .shapenet55 import read_shapenet55_split
from .validation import check_cloud

__all__ = ["IMAGE_FOLDERS", "IMAGE_KINDS", "ULIP_VIEWS", "VIEW_STEP_DEG", "UlipShapeNet", "read_taxonomy",
           "view_angles", "view_file_name"]

ULIP_VIEWS = 30
VIEW_STEP_DEG = 12
IMAGE_KINDS = {"rgb": "", "depth": "_depth0001"}  # render type -> file name suffix
IMAGE_FOLDERS = ("rendered_images", "only_rgb_depth_images")  # the full download, then the smaller one


def view_angles(views: int = ULIP_VIEWS) -> List[int]:
    """Azimuths (degrees) of ``views`` of ULIP's 30 views spread evenly round the object (all 30 by default).

    Args:
        views: 1 to 30; view ``k`` is ULIP's view ``floor(k * 30 / views)``.
    """
    if not 1 <= views <= ULIP_VIEWS:
        raise BadInputError(f"ULIP renders {ULIP_VIEWS} views per object, not {views}: pick 1 to {ULIP_VIEWS}.")
    return [VIEW_STEP_DEG * (k * ULIP_VIEWS // views) for k in range(views)]


def view_file_name(object_id: str, angle: int, kind: str = "rgb") -> str:
    """ULIP's file name of one render, e.g. ``02691156-1a04e3eab45ca15dd86060f189eb133_r_012_depth0001.png``.

    Args:
        object_id: ``<synset>-<model>``.
        angle: the view's azimuth in degrees (a multiple of 12 below 360).
        kind: ``rgb`` or ``depth``.
    """
    return f"{object_id}_r_{angle:03d}{IMAGE_KINDS[kind]}.png"


def read_taxonomy(path: Path) -> Dict[str, str]:
    """Synset id -> first name of each entry of a ShapeNet ``taxonomy.json``.

    Args:
        path: the file.
    """
    try:
        entries = json.loads(Path(path).read_text())
        return {str(e["synsetId"]): str(e["name"]).split(",")[0].strip() for e in entries}
    except (ValueError, TypeError, KeyError) as err:
        raise BadInputError(f"'{path}' is not a ShapeNet taxonomy (a JSON list of objects with synsetId and "
                            f"name): replace it with the taxonomy.json of ULIP's shapenet-55 download.") from err


def _read_names(path: Path) -> Dict[str, str]:
    """A synset id -> class name JSON file (e.g. ``shapenet_synset_dict.json``)."""
    try:
        names = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataNotFoundError(f"{path} does not exist: pass --synset-names a JSON file of synset id -> name, "
                                f"or leave it out to use taxonomy.json.") from None
    except ValueError as err:
        raise BadInputError(f"'{path}' is not JSON: pass --synset-names a JSON file of synset id -> name.") from err
    if not isinstance(names, dict):
        raise BadInputError(f"'{path}' is not a JSON object: pass --synset-names a JSON file of synset id -> name.")
    return {str(k): str(v) for k, v in names.items()}


class UlipShapeNet:
    """The objects, labels, point files and view files of one ULIP ``shapenet-55`` folder.

    Args:
        data_dir: the folder (ULIP's ``DATA_PATH``).
        images: the folder of renders; None: ``rendered_images`` or else ``only_rgb_depth_images`` in ``data_dir``.
        synset_names: a JSON file of synset id -> class name; None: ``taxonomy.json``'s first names, or the
            synset ids when the folder has no taxonomy.

    Raises:
        DataNotFoundError: ``shapenet_pc/``, a split list or the render folder is missing.
        BadInputError: ``taxonomy.json`` is unreadable.
    """

    def __init__(self, data_dir: str, images: Optional[str] = None, synset_names: Optional[str] = None) -> None:
        self.root = Path(data_dir)
        self._lists = {split: read_shapenet55_split(str(self.root), split) for split in ("train", "test")}
        _, _, self.synsets, _ = self._lists["train"]
        names: Dict[str, str] = {}
        if synset_names is not None:
            names = _read_names(Path(synset_names))
        elif (self.root / "taxonomy.json").is_file():
            names = read_taxonomy(self.root / "taxonomy.json")
        self.classes = [names.get(s, s) for s in self.synsets]
        self.images = self._image_folder(images)

    def _image_folder(self, images: Optional[str]) -> Path:
        candidates = [Path(images)] if images is not None else [self.root / name for name in IMAGE_FOLDERS]
        for folder in candidates:
            if folder.is_dir():
                return folder
        raise DataNotFoundError(f"No render folder at {' or '.join(str(c) for c in candidates)}: download ULIP's "
                                f"rendered_images (or only_rgb_depth_images) into the shapenet-55 folder, or pass "
                                f"--images.")

    def objects(self, split: str) -> List[Tuple[str, int]]:
        """``(object id, label)`` of each line of ``<split>.txt``, in file order.

        Args:
            split: ``train`` or ``test``.
        """
        _, labels, _, ids = self._lists[split]
        return list(zip(ids, labels.tolist()))

    def points_path(self, object_id: str) -> Path:
        """The object's ``.npy`` point file."""
        return self.root / "shapenet_pc" / f"{object_id}.npy"

    def points(self, object_id: str, num_points: Optional[int] = None) -> np.ndarray:
        """The object's xyz points (N, 3) float32, validated; farthest-point-sampled to ``num_points`` if given.

        Args:
            object_id: ``<synset>-<model>``.
            num_points: points to keep (farthest point sampling from point 0); None or more than the file
                holds: all of them, in file order.

        Raises:
            DataNotFoundError: the file is missing.
            BadInputError: the file is unreadable, not (N, 3+), empty or holds NaN/inf.
        """
        path = self.points_path(object_id)
        try:
            raw = np.load(path)
        except FileNotFoundError:
            raise DataNotFoundError(f"{path} is missing: complete the shapenet_pc download.") from None
        except (OSError, ValueError) as err:
            raise BadInputError(f"'{path}' is not a readable .npy file: download it again.") from err
        if raw.ndim != 2 or raw.shape[1] < 3:
            raise BadInputError(f"'{path}' holds an array of shape {raw.shape}, not (N, 3): download it again.")
        check_cloud(raw, f"'{path}'")
        xyz = np.ascontiguousarray(raw[:, :3], dtype=np.float32)
        if num_points is None or num_points >= len(xyz):
            return xyz
        return xyz[farthest_points(xyz, num_points)]

    def view_path(self, object_id: str, angle: int, kind: str = "rgb") -> Path:
        """The file of one render: in the object's folder when there is one, else directly in the render folder.

        Args:
            object_id: ``<synset>-<model>``.
            angle: the view's azimuth in degrees.
            kind: ``rgb`` or ``depth``.
        """
        folder = self.images / object_id
        return (folder if folder.is_dir() else self.images) / view_file_name(object_id, angle, kind)
