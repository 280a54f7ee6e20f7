"""2D maps of frozen-encoder features (``features_<split>.npz`` of ``mode=svm``): t-SNE or PCA scatter plots.

Features are standardised first, as for the SVM probe. Drawing uses matplotlib's object API (no pyplot).
"""
import json
import math
import os
import zipfile
from typing import List, Optional, Sequence, Tuple

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.preprocessing import StandardScaler

from ..errors import BadInputError, DataNotFoundError
from ..io import save_figure

METHODS = ("tsne", "pca")
TSNE_INPUT_DIMS = 50  # t-SNE runs on the top principal components of wider features (standard practice)
PANEL_INCHES = 5.0
LEGEND_INCHES = 1.8  # per legend column


def read_features(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(features (N,C) float32, labels (N,) int64)`` of a ``features_<split>.npz``.

    Raises:
        DataNotFoundError: the file does not exist.
        BadInputError: it is unreadable or lacks (N,C) ``features`` with N matching ``labels``.
    """
    if not os.path.isfile(path):
        raise DataNotFoundError(f"Features file '{path}' does not exist: pass the features_train.npz or "
                                f"features_test.npz that mode=svm writes into its run folder.")
    try:
        with np.load(path) as data:
            features, labels = data["features"], data["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        raise BadInputError(f"'{path}' is not an npz with 'features' and 'labels': pass a features_*.npz "
                            f"written by mode=svm.") from None
    if features.ndim != 2 or labels.shape != (len(features),) or len(features) < 3:
        raise BadInputError(f"'{path}' holds features of shape {features.shape} and labels of shape "
                            f"{labels.shape}: expected (N, C) and (N,) with N >= 3.")
    return features.astype(np.float32), labels.astype(np.int64)


def read_class_names(path: str) -> List[str]:
    """Class names, one a line (e.g. ``modelnet40_shape_names.txt``) or a JSON with ``classes`` (``meta.json``).

    Raises:
        DataNotFoundError: the file does not exist.
    """
    if not os.path.isfile(path):
        raise DataNotFoundError(f"Class names file '{path}' does not exist: pass --classes a text file with one "
                                f"name a line, or a rendered-views meta.json.")
    with open(path) as f:
        text = f.read()
    if path.endswith(".json"):
        return [str(name) for name in json.loads(text).get("classes", [])]
    return [line.strip() for line in text.splitlines() if line.strip()]


def check_class_names(labels: np.ndarray, class_names: Optional[Sequence[str]], source: str) -> None:
    """Raise :class:`BadInputError` when a label has no name in ``class_names`` (``None``: indices, always fine).

    Args:
        labels: (N,) class indices.
        class_names: names of labels 0, 1, ...
        source: where the labels come from, for the message.
    """
    top = int(labels.max())
    if class_names is not None and top >= len(class_names):
        raise BadInputError(f"Label {top} of {source} has no name: --classes lists {len(class_names)} classes.")


def embed_2d(features: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """(N, 2) coordinates of standardised ``features`` by t-SNE or PCA.

    Args:
        features: (N, C) features, N >= 3.
        method: ``tsne`` or ``pca``.
        seed: random state of t-SNE and of the PCA solver.
    """
    if method not in METHODS:
        raise BadInputError(f"Unknown method '{method}': use one of {', '.join(METHODS)}.")
    x = StandardScaler().fit_transform(features.astype(np.float64))
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if x.shape[1] > TSNE_INPUT_DIMS and len(x) > TSNE_INPUT_DIMS:
        x = PCA(n_components=TSNE_INPUT_DIMS, random_state=seed).fit_transform(x)
    perplexity = min(30.0, (len(x) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                random_state=seed).fit_transform(x)


def class_colours(count: int) -> np.ndarray:
    """(count, 4) RGBA colours, distinct for up to 60 classes (tab10, tab20, then tab20 + tab20b + tab20c)."""
    from matplotlib import colormaps

    if count <= 10:
        return colormaps["tab10"](np.arange(count))
    if count <= 20:
        return colormaps["tab20"](np.arange(count))
    if count <= 60:
        table = np.concatenate([colormaps[name](np.arange(20)) for name in ("tab20", "tab20b", "tab20c")])
        return table[:count]
    return colormaps["gist_rainbow"](np.linspace(0, 1, count))


def draw_embeddings(panels: Sequence[Tuple[str, np.ndarray, np.ndarray]], out: str,
                    class_names: Optional[Sequence[str]] = None, dpi: int = 100, config_key: str = "--out") -> None:
    """Write a PNG with one scatter panel per ``(title, coords (N,2), labels (N,))`` and one shared legend.

    Args:
        panels: the panels, left to right.
        out: destination PNG.
        class_names: names of labels 0, 1, ...; label indices when ``None``.
        dpi: dots per inch.
        config_key: the option that chose ``out``, named when it cannot be written.

    Raises:
        BadInputError: a label has no name in ``class_names``.
    """
    from matplotlib.figure import Figure

    for title, _, labels in panels:
        check_class_names(labels, class_names, f"panel '{title}'")
    top = max(int(labels.max()) for _, _, labels in panels)
    present = sorted(set().union(*(np.unique(labels).tolist() for _, _, labels in panels)))
    names = [class_names[i] if class_names is not None else str(i) for i in range(top + 1)]
    colours = class_colours(top + 1)
    columns = math.ceil(len(present) / 20)
    fig = Figure(figsize=(PANEL_INCHES * len(panels) + LEGEND_INCHES * columns, PANEL_INCHES), dpi=dpi,
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    size = float(np.clip(6000 / max(len(c) for _, c, _ in panels), 4, 40))  # smaller dots for more samples
    handles = {}
    for ax, (title, coords, labels) in zip(axes, panels):
        for label in np.unique(labels):
            chosen = labels == label
            handles[label] = ax.scatter(coords[chosen, 0], coords[chosen, 1], s=size, color=colours[label],
                                        alpha=0.8, linewidths=0, label=names[label])
        ax.set_title(title, fontsize="medium")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(handles=[handles[label] for label in present], loc="outside right upper", ncols=columns,
               fontsize="small", markerscale=max(1.0, 30 / size) ** 0.5, frameon=False)
    save_figure(fig, out, dpi, config_key)
