"""Training curves of a run: the per-epoch figures the training loop records (``history.json``), one panel each
for the losses, the validation figures, the learning rate and the share of time spent waiting for data.

Drawing uses matplotlib's object API (no pyplot); the PNG is written atomically.
"""
from typing import Dict, List, Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from ..io import save_figure

PANEL_INCHES = (5.0, 3.2)
VALIDATION_PREFIXES = ("val_", "holdout_")


def curve_panels(history: Sequence[Mapping[str, float]]) -> Dict[str, List[str]]:
    """The figures of ``history`` grouped into panels: ``loss``, ``validation``, ``lr``, ``data wait``, ``other``.

    Args:
        history: one mapping of figures per epoch, each with ``epoch``.
    """
    keys = list(dict.fromkeys(key for record in history for key in record if key != "epoch"))
    panels: Dict[str, List[str]] = {"loss": [], "validation": [], "lr": [], "data wait": [], "other": []}
    for key in keys:
        if key.startswith("loss"):
            panels["loss"].append(key)
        elif key.startswith(VALIDATION_PREFIXES):
            panels["validation"].append(key)
        elif key == "lr":
            panels["lr"].append(key)
        elif key == "data_wait":
            panels["data wait"].append(key)
        elif not key.endswith(("regions", "outside")):  # counts the models log, not curves
            panels["other"].append(key)
    return {name: keys for name, keys in panels.items() if keys}


def plot_training_curves(history: Sequence[Mapping[str, float]], out: str, title: str = "", dpi: int = 100,
                         config_key: str = "root_dir") -> None:
    """Draw ``history`` (``[{epoch, loss, ..., lr, data_wait}, ...]``) into ``out`` (PNG), one panel per group.

    Args:
        history: the per-epoch figures, in epoch order.
        out: the image file.
        title: the figure's title (e.g. the run folder's name).
        dpi: resolution.
        config_key: the config key that chose where ``out`` lies, named when it cannot be written.
    """
    panels = curve_panels(history)
    fig = Figure(figsize=(PANEL_INCHES[0] * len(panels), PANEL_INCHES[1]), dpi=dpi, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    epochs = [record["epoch"] for record in history]
    for ax, (name, keys) in zip(axes, panels.items()):
        for key in keys:
            points = [(e, record[key]) for e, record in zip(epochs, history) if record.get(key) is not None]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=key)
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if name == "data wait":
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        if len(keys) > 1 or name in ("validation", "other"):
            ax.legend(fontsize="small", frameon=False)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize="medium")
    save_figure(fig, out, dpi, config_key)
