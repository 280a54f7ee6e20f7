"""Pix3D (Sun et al., CVPR 2018): real photographs of furniture aligned to 3D models, for image <-> shape retrieval.

Layout (the official download)::

    <data_dir>/
      pix3d.json          a list of records, one per image: {"img": "img/bed/0001.png", "mask": "mask/bed/0001.png",
                          "model": "model/bed/IKEA_MALM_2/model.obj", "category": "bed", "img_size": [w, h],
                          "bbox": [x0, y0, x1, y1], ...}; paths relative to <data_dir>
      img/<category>/...  photographs (jpg/png, any size)
      mask/<category>/... binary object masks, the size of their image
      model/<category>/<model>/model.obj   the meshes; many images share one model

Pix3D has no official split: every split reads all records (of ``category``), since it serves evaluation only.
Each model is sampled once to surface points with ``trimesh`` (seeded by the seed and the model's path, so
the same in every worker and order) and kept in memory; the points are centred and scaled into the unit
sphere. Images are preprocessed as CLIP's own transform does: the shorter side resized (bicubic) to
``image_size``, then the centre square cropped.
"""
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from openpoints.dataset.build import DATASETS
from PIL import Image
from torch.utils.data import Dataset

from ..errors import BadInputError, ConfigError, DataNotFoundError
from .rendered_views import center_and_scale
from .validation import SPLITS

__all__ = ["Pix3D"]

FILLS = {"black": 0.0, "white": 1.0}
RECORD_KEYS = ("img", "mask", "model", "category")


@DATASETS.register_module()
class Pix3D(Dataset):
    """One Pix3D photograph and the surface points of its model per sample.

    A sample holds ``pos`` (N,3) and ``x`` = ``pos``, ``heights`` (N,1) above the lowest point along y,
    ``img`` (3, image_size, image_size) in [0, 1], ``y`` (index of the category in :attr:`classes`),
    ``shape_index`` (index of its model in :attr:`models`: the right answer of image -> shape retrieval)
    and ``index``.

    Args:
        data_dir: the Pix3D folder (``pix3d.json``, ``img/``, ``mask/``, ``model/``).
        split: ``train``, ``val`` or ``test``; all read every record (Pix3D has no official split).
        num_points: surface points sampled per model.
        background: keep the photograph's background; False: pixels outside the mask are set to
            ``mask_fill`` (the image multiplied by its mask for black, as the paper's release does).
        category: keep only the records of this category (or these categories); None: all.
        image_size: side of the square images.
        mask_fill: ``black`` or ``white``: the colour outside the mask when ``background`` is False.
        seed: seeds the surface sampling.
        transform: an OpenPoints transform applied to ``{"pos": ...}``.

    Attributes:
        classes: the sorted categories of ``pix3d.json`` (all records, so labels do not depend on ``category``).
        models: the sorted model paths of the kept records.
        labels: (S,) int64 category of each record.
        shape_indices: (S,) int64 model of each record.

    Raises:
        ConfigError: an unknown setting or category.
        DataNotFoundError: ``pix3d.json`` or a file it names is missing.
        BadInputError: ``pix3d.json`` is malformed, a mask does not fit its image, a mesh has no surface.
    """

    gravity_dim = 1  # Pix3D's models are y-up

    def __init__(self, data_dir: str, split: str = "test", num_points: int = 2048, background: bool = True,
                 category: Optional[Union[str, Sequence[str]]] = None, image_size: int = 224,
                 mask_fill: str = "black", seed: int = 0, transform: Optional[Callable] = None) -> None:
        super().__init__()
        if split not in SPLITS:
            raise ConfigError(f"Unknown Pix3D split '{split}': set dataset.<train|val|test>.split to train, val or "
                              f"test (all read every record).")
        for name, value in (("num_points", num_points), ("image_size", image_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"dataset.common.{name} is {value!r}: set it to a positive integer.")
        if mask_fill not in FILLS:
            raise ConfigError(f"dataset.common.mask_fill is {mask_fill!r}: set it to {' or '.join(FILLS)}.")
        self.root = Path(data_dir)
        records = self._read_records()
        self.classes: List[str] = sorted({r["category"] for r in records})
        if category is not None:
            wanted = [category] if isinstance(category, str) else list(category)
            unknown = [c for c in wanted if c not in self.classes]
            if unknown:
                raise ConfigError(f"Pix3D has no category '{unknown[0]}': set dataset.common.category to one or "
                                  f"more of {', '.join(self.classes)}, or null for all.")
            records = [r for r in records if r["category"] in wanted]
        self.records = records
        self.models: List[str] = sorted({r["model"] for r in records})
        model_index = {m: k for k, m in enumerate(self.models)}
        self.labels = np.array([self.classes.index(r["category"]) for r in records], dtype=np.int64)
        self.shape_indices = np.array([model_index[r["model"]] for r in records], dtype=np.int64)
        self._check_files(background)
        self.split, self.num_points, self.background, self.image_size = split, num_points, background, image_size
        self.fill, self.seed, self.transform = FILLS[mask_fill], seed, transform
        self._shapes: Dict[int, np.ndarray] = {}

    def _read_records(self) -> List[Dict[str, Any]]:
        path = self.root / "pix3d.json"
        if not path.is_file():
            raise DataNotFoundError(f"'{path}' does not exist: set dataset.common.data_dir to the Pix3D folder "
                                    f"(the one holding pix3d.json, img/, mask/ and model/).")
        try:
            records = json.loads(path.read_text())
        except ValueError as err:
            raise BadInputError(f"'{path}' is not JSON: download Pix3D's pix3d.json again.") from err
        if not isinstance(records, list) or not records:
            raise BadInputError(f"'{path}' holds no list of records: download Pix3D's pix3d.json again.")
        for k, record in enumerate(records):
            missing = [key for key in RECORD_KEYS if not isinstance(record, dict) or key not in record]
            if missing:
                raise BadInputError(f"Record {k} of '{path}' has no '{missing[0]}': download Pix3D's pix3d.json "
                                    f"again.")
        return records

    def _check_files(self, background: bool) -> None:
        keys = ("img", "model") if background else ("img", "mask", "model")
        for record in self.records:
            for key in keys:
                if not (self.root / record[key]).is_file():
                    raise DataNotFoundError(f"'{self.root / record[key]}' ({key} of a pix3d.json record) is missing: "
                                            f"complete the Pix3D download in dataset.common.data_dir.")

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_shapes(self) -> int:
        """The number of distinct models (the shape gallery of image -> shape retrieval)."""
        return len(self.models)

    def shape_points(self, shape_index: int) -> np.ndarray:
        """The unit-sphere surface points (num_points, 3) float32 of model ``shape_index``, sampled once.

        Args:
            shape_index: index into :attr:`models`.
        """
        if shape_index not in self._shapes:
            import trimesh  # imported on first use: loading trimesh takes a while and only Pix3D needs it

            model = self.models[shape_index]
            mesh = trimesh.load(str(self.root / model), force="mesh", skip_materials=True)
            if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0 or not mesh.area > 0:
                raise BadInputError(f"'{self.root / model}' has no surface to sample: download the model again.")
            digest = hashlib.blake2b(f"{self.seed}:{model}".encode(), digest_size=8).digest()
            points, _ = trimesh.sample.sample_surface(mesh, self.num_points, seed=int.from_bytes(digest, "little"))
            self._shapes[shape_index] = center_and_scale(np.asarray(points, dtype=np.float32))[0]
        return self._shapes[shape_index]

    def image(self, index: int) -> torch.Tensor:
        """Record ``index``'s photograph (3, image_size, image_size) in [0, 1], masked unless ``background``.

        Args:
            index: the record.
        """
        record = self.records[index]
        image = np.asarray(Image.open(self.root / record["img"]).convert("RGB"), dtype=np.float32) / 255.0
        if not self.background:
            mask = np.asarray(Image.open(self.root / record["mask"]).convert("L"), dtype=np.float32) / 255.0
            if mask.shape != image.shape[:2]:
                raise BadInputError(f"Mask '{self.root / record['mask']}' is {mask.shape[1]}x{mask.shape[0]} but "
                                    f"its image is {image.shape[1]}x{image.shape[0]}: download the mask again.")
            image = image * mask[..., None] + self.fill * (1.0 - mask[..., None])
        return _resize_and_crop(image, self.image_size)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        shape_index = int(self.shape_indices[index])
        data: Dict[str, Any] = {"pos": self.shape_points(shape_index).copy()}
        if self.transform is not None:
            data = self.transform(data)
        pos = torch.as_tensor(np.asarray(data["pos"]), dtype=torch.float32).contiguous()
        height = pos[:, self.gravity_dim:self.gravity_dim + 1]
        return {"pos": pos, "x": pos, "heights": height - height.min(), "img": self.image(index),
                "y": torch.tensor(self.labels[index]), "shape_index": torch.tensor(shape_index, dtype=torch.int64),
                "index": torch.tensor(index, dtype=torch.int64)}


def _resize_and_crop(image: np.ndarray, size: int) -> torch.Tensor:
    """CLIP's preprocessing of an (H, W, 3) image in [0, 1]: shorter side to ``size`` (bicubic), centre crop."""
    height, width = image.shape[:2]
    scale = size / min(height, width)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    pil = Image.fromarray(np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8))
    resized = np.asarray(pil.resize((new_w, new_h), Image.BICUBIC), dtype=np.float32) / 255.0
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return torch.from_numpy(resized[top:top + size, left:left + size]).permute(2, 0, 1).contiguous()
