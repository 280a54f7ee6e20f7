"""Cumulative match curves of a retrieval run (``mode=retrieval``): the share of queries whose first relevant
item ranks within k, for every k, per direction (image->shape, shape->image). At k = 1 and 5 they are the
run's top-1 and top-5.

Drawing uses matplotlib's object API (no pyplot); the PNG is written atomically.
"""
from typing import Mapping

import numpy as np
from matplotlib.figure import Figure

from ..errors import BadInputError
from ..io import save_figure

LABELS = {"i2s": "image -> shape", "s2i": "shape -> image"}


def cumulative_match(ranks: np.ndarray) -> np.ndarray:
    """Percent of queries with their first relevant item within rank k, for k = 1 .. max rank.

    Args:
        ranks: (Q,) 1-based ranks of each query's first relevant item.
    """
    ranks = np.asarray(ranks).reshape(-1)
    if len(ranks) == 0 or ranks.min() < 1:
        raise BadInputError(f"Cumulative match curves need 1-based ranks of at least one query, got {len(ranks)} "
                            f"ranks: pass the i2s_rank or s2i_rank of a retrieval_<split>.npz.")
    counts = np.bincount(ranks.astype(np.int64), minlength=int(ranks.max()) + 1)[1:]
    return 100.0 * np.cumsum(counts) / len(ranks)


def plot_cumulative_match(ranks: Mapping[str, np.ndarray], out: str, title: str = "", dpi: int = 100,
                          config_key: str = "root_dir") -> None:
    """Draw the :func:`cumulative_match` curve of each direction of ``ranks`` into ``out`` (PNG), k on a log axis.

    Args:
        ranks: direction (``i2s``, ``s2i``) -> (Q,) 1-based ranks.
        out: the image file.
        title: the figure's title (e.g. the split and gallery).
        dpi: resolution.
        config_key: the config key that chose where ``out`` lies, named when it cannot be written.
    """
    fig = Figure(figsize=(5.0, 3.6), dpi=dpi, layout="constrained")
    ax = fig.subplots()
    for direction, values in ranks.items():
        curve = cumulative_match(values)
        ax.step(np.arange(1, len(curve) + 1), curve, where="post", label=LABELS.get(direction, direction))
    ax.set_xscale("log")
    ax.set_xlabel("rank k")
    ax.set_ylabel("queries with a match within k (%)")
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small", frameon=False)
    if title:
        ax.set_title(title, fontsize="medium")
    save_figure(fig, out, dpi, config_key)
