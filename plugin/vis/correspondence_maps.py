"""Pic@Point correspondence maps (the paper's Fig. 4): one 3D region against every image region of a view.

The model embeds a rendered object's points and one of its views; the map is the cosine similarity between
the local 3D embedding of one region and each of the S x S local image embeddings. The region's positive
cell is the cell its centre projects into (Sec. 3.3). Drawing uses matplotlib's object API (no pyplot, so
no global backend state).
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..datasets import RenderedViews
from ..datasets.rendered_views import farthest_points
from ..errors import BadInputError, DataNotFoundError
from ..io import save_figure
from ..models import tap_features
from ..render.cameras import project

RENDER = "python tools/render_views.py"
FIGSIZE = (10.0, 4.6)  # inches of the two-panel figure; the PNG is FIGSIZE * dpi pixels
CMAP = "turbo"
ALPHA = 0.55  # weight of the heatmap over the view


@dataclass
class RenderedObject:
    """One object of a rendered-views folder (:mod:`plugin.datasets.rendered_views`) with one of its views.

    Attributes:
        points: (N, 3) xyz or (N, 6) xyz + normals, float32.
        image: (H, W, 3) the rendered view, float32 in [0, 1].
        view: (4, 4) world-to-camera matrix of the view.
        proj: (4, 4) camera-to-clip matrix of the view.
    """

    points: np.ndarray
    image: np.ndarray
    view: np.ndarray
    proj: np.ndarray


@dataclass
class CorrespondenceMap:
    """The similarity of one 3D region to every image region.

    Attributes:
        similarity: (S, S) cosine similarities, row-major like the image cells.
        region: index of the 3D region (a column of ``local_3d``).
        center_uv: (2,) image coordinates of the region's centre (u right, v down, in [0, 1)).
        cell: the positive cell ``row * S + col`` of the region's centre.
    """

    similarity: np.ndarray
    region: int
    center_uv: np.ndarray
    cell: int

    @property
    def grid_size(self) -> int:
        """S, the side of the image feature grid."""
        return self.similarity.shape[0]


def load_rendered_object(folder: str, view: int) -> RenderedObject:
    """Read ``points.npy``, ``view_<view>.png`` and the view's cameras from an object folder.

    Args:
        folder: ``<data_dir>/<object_id>`` written by ``tools/render_views.py``.
        view: index of the view.

    Raises:
        DataNotFoundError: the folder, its points, its cameras or the view is missing.
        BadInputError: the points are empty or not finite.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataNotFoundError(f"Object folder '{root}' does not exist: pass --object <data_dir>/<object_id> "
                                f"of a folder written by {RENDER}.")
    cameras_path, points_path = root / "cameras.npz", root / "points.npy"
    if not cameras_path.is_file() or not points_path.is_file():
        raise DataNotFoundError(f"'{root}' has no cameras.npz or points.npy, so it is not a finished render: "
                                f"run {RENDER} (with the same --out it resumes) and pass one of its object folders.")
    with np.load(cameras_path) as cameras:
        views, projs = cameras["view"], cameras["proj"]
    image_path = root / f"view_{view:02d}.png"
    if not 0 <= view < len(views) or not image_path.is_file():
        raise DataNotFoundError(f"View {view} of '{root}' does not exist: pass --view between 0 and "
                                f"{len(views) - 1}.")
    points = np.load(points_path).astype(np.float32)
    if points.ndim != 2 or points.shape[0] == 0 or points.shape[1] < 3 or not np.isfinite(points).all():
        raise BadInputError(f"'{points_path}' is empty, not (N, 3|6) or holds NaN/inf: re-render that object.")
    image = np.asarray(Image.open(image_path).convert("RGB"), dtype=np.float32) / 255.0
    return RenderedObject(points, image, views[view].astype(np.float32), projs[view].astype(np.float32))


def model_input(obj: RenderedObject, num_points: Optional[int], use_normals: bool,
                sampling: str = "random") -> Dict[str, torch.Tensor]:
    """A collated batch of one, as ``RenderedViews`` gives it without augmentation: fixed points, unrotated.

    Args:
        obj: the object and view.
        num_points: points to keep (all when ``None``).
        use_normals: ``x`` is xyz + normals instead of xyz.
        sampling: ``RenderedViews``' ``sampling``: ``random`` keeps the first points, ``fps`` the farthest ones.

    Returns:
        ``pos`` (1,N,3), ``x`` (1,N,3|6), ``heights`` (1,N,1), ``img`` (1,3,H,W) in [0, 1] (the model
        normalises it for its backbone), ``view`` and ``proj`` (1,4,4); pass it through
        :func:`plugin.engine.batch.prepare_batch` before the model.
    """
    keep = farthest_points(obj.points[:, :3], num_points) if sampling == "fps" and num_points else slice(num_points)
    points = torch.from_numpy(obj.points[keep])
    if use_normals and points.shape[1] < 6:
        raise BadInputError("The object's points.npy has no normals: set dataset.common.use_normals=False.")
    pos = points[:, :3].contiguous()
    x = points[:, :6].contiguous() if use_normals else pos
    height = pos[:, RenderedViews.gravity_dim:RenderedViews.gravity_dim + 1]
    return {"pos": pos[None], "x": x[None], "heights": (height - height.min())[None],
            "img": torch.from_numpy(obj.image).permute(2, 0, 1)[None], "view": torch.from_numpy(obj.view)[None],
            "proj": torch.from_numpy(obj.proj)[None]}


def similarity_map(local_3d: torch.Tensor, local_2d: torch.Tensor, region: int) -> torch.Tensor:
    """Cosine similarity between one 3D region and every image region of one sample.

    Args:
        local_3d: (d, L) local 3D embeddings.
        local_2d: (d, S*S) local image embeddings, row-major cells.
        region: the column of ``local_3d``.

    Returns:
        (S*S,) similarities in [-1, 1].
    """
    return F.cosine_similarity(local_3d[:, region:region + 1], local_2d, dim=0)


def pick_region(uv: torch.Tensor, inside: torch.Tensor) -> int:
    """The region inside the image whose centre projects nearest to the image centre.

    Args:
        uv: (L, 2) image coordinates of the region centres.
        inside: (L,) which centres project into the image.

    Raises:
        BadInputError: no centre projects into the image.
    """
    if not bool(inside.any()):
        raise BadInputError("No 3D region of the object projects into this view: pick another --view.")
    distance = (uv - 0.5).norm(dim=-1).masked_fill(~inside, float("inf"))
    return int(distance.argmin())


@torch.no_grad()
def correspondence(model: torch.nn.Module, data: Dict[str, torch.Tensor],
                   region: Optional[int] = None) -> CorrespondenceMap:
    """The correspondence map of ``region`` (default: :func:`pick_region`) for a batch of one.

    Args:
        model: a Pic@Point model (``embed`` and ``encoder``), in eval mode.
        data: model input of one sample (``pos``, ``x`` (1,C,N), ``img``, ``view``, ``proj``).
        region: index of the 3D region (the encoder's tap centres).

    Raises:
        BadInputError: ``region`` does not exist or projects outside the view.
    """
    e = model.embed(data)
    centers, _, _ = tap_features(model.encoder, data)  # the centres embed() used (the tap is deterministic)
    uv = project(centers, data["view"], data["proj"])[0][0]
    inside, count = e["inside"][0], e["local_3d"].shape[-1]
    if region is None:
        region = pick_region(uv, inside)
    elif not 0 <= region < count:
        raise BadInputError(f"--point {region} does not exist: the encoder has {count} regions (0 to {count - 1}).")
    elif not bool(inside[region]):
        raise BadInputError(f"Region {region} projects outside this view: pick another --point or --view.")
    size = int(round(e["local_2d"].shape[-1] ** 0.5))
    similarity = similarity_map(e["local_3d"][0], e["local_2d"][0], region).view(size, size)
    return CorrespondenceMap(similarity.cpu().numpy(), region, uv[region].cpu().numpy(), int(e["cells"][0, region]))


def upsample(similarity: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of an (S, S) map to (height, width), cell centres on cell centres."""
    grid = torch.from_numpy(similarity).float()[None, None]
    return F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()


def _cell_patch(cell: int, size: int, width: int, height: int, **style):
    """A rectangle over cell ``cell`` of the S x S grid in pixel coordinates."""
    from matplotlib.patches import Rectangle

    row, col = divmod(cell, size)
    return Rectangle((col * width / size, row * height / size), width / size, height / size, fill=False, **style)


def blend(image: np.ndarray, result: CorrespondenceMap, cmap: str = CMAP, alpha: float = ALPHA) -> Tuple[np.ndarray, Any]:
    """The heatmap, upsampled to the view and colour-mapped over min..max, alpha-blended over the view.

    Args:
        image: (H, W, 3) the rendered view in [0, 1].
        result: the map to blend.
        cmap: matplotlib colormap name.
        alpha: weight of the heatmap.

    Returns:
        ``(rgb (H, W, 3), mappable)``: the blended image and a ScalarMappable for its colorbar.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    norm = Normalize(float(result.similarity.min()), float(result.similarity.max()))
    heat = colormaps[cmap](norm(upsample(result.similarity, *image.shape[:2])))[..., :3]
    return (1 - alpha) * image + alpha * heat, ScalarMappable(norm, cmap)


def draw_correspondence(image: np.ndarray, result: CorrespondenceMap, out: str, view: int, dpi: int = 100,
                        config_key: str = "--out") -> None:
    """Write a PNG of the view (left) and the similarity heatmap blended over it (right).

    Both panels mark the region's projected centre; the right one also outlines its positive cell (solid)
    and the most similar cell (dashed), over the faint S x S grid.

    Args:
        image: (H, W, 3) the rendered view in [0, 1].
        result: the map to draw.
        out: destination PNG.
        view: index of the view, for the titles.
        dpi: dots per inch; the PNG is ``FIGSIZE * dpi`` pixels.
        config_key: the option that chose ``out``, named when it cannot be written.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    height, width = image.shape[:2]
    size, extent = result.grid_size, (0, width, height, 0)
    fig = Figure(figsize=FIGSIZE, dpi=dpi, layout="constrained")
    left, right = fig.subplots(1, 2)
    rgb, mappable = blend(image, result)
    left.imshow(image, extent=extent)
    right.imshow(rgb, extent=extent)
    for i in range(1, size):
        right.axvline(i * width / size, color="white", lw=0.5, alpha=0.4)
        right.axhline(i * height / size, color="white", lw=0.5, alpha=0.4)
    right.add_patch(_cell_patch(result.cell, size, width, height, edgecolor="white", lw=2.5))
    best = int(result.similarity.argmax())
    right.add_patch(_cell_patch(best, size, width, height, edgecolor="black", lw=1.5, ls="--"))
    for ax in (left, right):
        ax.scatter([result.center_uv[0] * width], [result.center_uv[1] * height], marker="*", s=220, c="red",
                   edgecolors="white", linewidths=1.2, zorder=5)
        ax.set_axis_off()
    left.set_title(f"view {view}, 3D region {result.region}")
    right.set_title(f"similarity of region {result.region} to the {size}x{size} image regions")
    fig.colorbar(mappable, ax=right, shrink=0.85, label="cosine similarity")
    right.legend(handles=[Line2D([], [], ls="", marker="*", ms=12, mfc="red", mec="white", label="region centre"),
                          Line2D([], [], color="white", lw=2.5, label="positive cell"),
                          Line2D([], [], color="black", lw=1.5, ls="--", label="most similar cell")],
                 loc="lower left", fontsize="small", facecolor="lightgrey", framealpha=0.8)
    save_figure(fig, out, dpi, config_key)
