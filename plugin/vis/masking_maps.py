"""I2P-MAE masking figures (supplementary Fig. 5 of Zhang et al., CVPR 2023), drawn by ``tools/visualize.py i2p-mask``.

One row per object, five panels: the input cloud; random masking; the attention cloud S at the token centres;
the 2D-guided mask; and the reconstruction (predicted patches of masked tokens, true patches of visible ones).
In the mask panels every input point takes the colour of its nearest coarsest token centre when that token is
visible, grey when it is masked. All panels use one fixed orthographic projection (:data:`ELEVATION`,
:data:`AZIMUTH`, y up), points drawn far to near.
"""
import os
from dataclasses import dataclass
from typing import List, Sequence

import numpy as np
import torch

from ..errors import BadInputError, DataNotFoundError
from ..io import save_figure

ELEVATION, AZIMUTH = 20.0, -45.0   # degrees, of the fixed orthographic camera
PANEL_INCHES = 2.6
MASKED_GREY = (0.82, 0.82, 0.82)
VISIBLE_COLOUR, PREDICTED_COLOUR = "tab:blue", "tab:orange"
TITLES = ("input", "random masking", "attention cloud S", "2D-guided masking", "reconstruction")


@dataclass
class MaskingRow:
    """One object's arrays, NumPy on CPU (shapes as :meth:`I2PMAE.explain`, batch dimension dropped)."""

    points: np.ndarray          # (P, 3) the model input
    centers: np.ndarray         # (G, 3) coarsest token centres
    saliency: np.ndarray        # (G,) attention cloud S
    random_mask: np.ndarray     # (G,) bool, True = masked
    guided_mask: np.ndarray     # (G,) bool, True = masked
    patches: np.ndarray         # (N, k, 3) predicted (masked target tokens) or true (visible) patches
    target_visible: np.ndarray  # (N,) bool


def load_cloud(path: str) -> np.ndarray:
    """The (N, 3) xyz of a ``.npy`` (N, 3+) array or a ``.txt`` of comma-separated rows (ModelNet40 layout).

    Raises:
        DataNotFoundError: ``path`` does not exist.
        BadInputError: it cannot be read or is not an (N, 3+) array of finite numbers.
    """
    if not os.path.isfile(path):
        raise DataNotFoundError(f"Cloud '{path}' does not exist: pass .npy or .txt files of (N, 3+) points "
                                f"to --clouds.")
    try:
        data = np.load(path, allow_pickle=False) if path.endswith(".npy") else np.loadtxt(path, delimiter=",", ndmin=2)
    except (OSError, ValueError) as error:
        raise BadInputError(f"Cloud '{path}' cannot be read ({error}): pass a .npy array or a comma-separated "
                            f".txt of (N, 3+) points.") from None
    if data.ndim != 2 or data.shape[1] < 3 or len(data) == 0 or not np.isfinite(data[:, :3]).all():
        raise BadInputError(f"Cloud '{path}' holds an array of shape {data.shape}, not (N, 3+) finite points: "
                            f"pass one object per file.")
    return data[:, :3].astype(np.float32)


def prepare_cloud(points: np.ndarray, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """Centre, scale into the unit sphere and draw ``num_points`` points (with replacement only if fewer)."""
    points = points - points.mean(axis=0)
    points = points / max(float(np.linalg.norm(points, axis=1).max()), 1e-12)
    pick = rng.choice(len(points), num_points, replace=len(points) < num_points)
    return points[pick]


def masking_rows(model: torch.nn.Module, clouds: Sequence[np.ndarray], device: torch.device) -> List[MaskingRow]:
    """Run ``model.explain`` (an :class:`I2PMAE`, in eval mode) on the clouds, all of one size, as one batch."""
    pos = torch.from_numpy(np.stack(clouds)).float().to(device)
    out = {key: value.cpu().numpy() for key, value in model.explain(pos).items()}
    return [MaskingRow(points=clouds[i], centers=out["centers"][i], saliency=out["saliency"][i],
                       random_mask=out["random_mask"][i], guided_mask=out["guided_mask"][i],
                       patches=out["patches"][i], target_visible=out["target_visible"][i]) for i in range(len(clouds))]


def project(points: np.ndarray) -> np.ndarray:
    """(M, 3) -> (M, 3): screen x, screen y and depth (larger = nearer) of the fixed orthographic camera."""
    a, e = np.radians(AZIMUTH), np.radians(ELEVATION)
    yaw = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    pitch = np.array([[1, 0, 0], [0, np.cos(e), -np.sin(e)], [0, np.sin(e), np.cos(e)]])
    return points @ (pitch @ yaw).T


def nearest_token(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """(P,) index of each point's nearest centre."""
    return ((points[:, None, :] - centers[None, :, :]) ** 2).sum(-1).argmin(axis=1)


def mask_colours(points: np.ndarray, centers: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(P, 3) RGB: the colour of the point's token (tab20, by token index) if visible, grey if masked."""
    from matplotlib import colormaps

    token = nearest_token(points, centers)
    colours = np.asarray(colormaps["tab20"](token % 20))[:, :3]
    colours[mask[token]] = MASKED_GREY
    return colours


def _scatter(ax, points: np.ndarray, colours, size: float, **style) -> None:
    screen = project(points)
    order = np.argsort(screen[:, 2])   # far to near
    if not isinstance(colours, str):   # one colour per point (RGB rows or values for cmap)
        colours = np.asarray(colours)[order]
    ax.scatter(screen[order, 0], screen[order, 1], c=colours, s=size, linewidths=0, **style)


def draw_masking(rows: Sequence[MaskingRow], out: str, dpi: int = 100, point_size: float = 2.0,
                 config_key: str = "--out") -> None:
    """Write the figure: one row per object, the five panels of :data:`TITLES`.

    Args:
        rows: the objects (:func:`masking_rows`).
        out: destination PNG.
        dpi: dots per inch; each panel is ``PANEL_INCHES`` square.
        point_size: marker area of the input points (token centres are drawn 12 times larger).
        config_key: the option that chose ``out``, named when it cannot be written.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(len(TITLES) * PANEL_INCHES, len(rows) * PANEL_INCHES), dpi=dpi, layout="constrained")
    axes = np.asarray(fig.subplots(len(rows), len(TITLES), squeeze=False))
    for r, row in enumerate(rows):
        tokens = len(row.centers)
        _scatter(axes[r, 0], row.points, "0.3", point_size)
        _scatter(axes[r, 1], row.points, mask_colours(row.points, row.centers, row.random_mask), point_size)
        _scatter(axes[r, 2], row.centers, row.saliency, 12 * point_size, cmap="viridis")
        _scatter(axes[r, 3], row.points, mask_colours(row.points, row.centers, row.guided_mask), point_size)
        visible = row.target_visible
        _scatter(axes[r, 4], row.patches[visible].reshape(-1, 3), VISIBLE_COLOUR, point_size)
        _scatter(axes[r, 4], row.patches[~visible].reshape(-1, 3), PREDICTED_COLOUR, point_size)
        labels = (f"{len(row.points)} points", f"{int((~row.random_mask).sum())} of {tokens} visible",
                  f"S in [{row.saliency.min():.3g}, {row.saliency.max():.3g}]",
                  f"{int((~row.guided_mask).sum())} of {tokens} visible",
                  f"{int((~visible).sum())} predicted (orange), {int(visible.sum())} visible patches")
        for c, ax in enumerate(axes[r]):
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            ax.set_title(f"{TITLES[c]}\n{labels[c]}" if r == 0 else labels[c], fontsize=8)
    save_figure(fig, out, dpi, config_key)
