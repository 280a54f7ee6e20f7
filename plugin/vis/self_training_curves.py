"""Cross-MoST self-training curves (Figs. 3-4 of the paper), drawn by ``tools/visualize.py selftrain``.

Six panels over epochs (epoch 0 = before training), from a run's ``history.json``: (a) top-1 accuracy of the
Image, Image* and Point cloud heads, student solid and teacher dashed; (b) prediction entropy, KL(softmax ||
uniform); (c) bias, KL(predicted class histogram || uniform); (d) share of kept pseudo-labels taken from the image
and the kept fraction; (e) pseudo-label accuracy and teacher image/point agreement; (f) the loss terms.
Records may lack keys (epoch 0 has no ``pl_*`` / ``loss_*``; ``image_star`` needs views): absent series are
skipped and a panel with none says so. Drawing uses matplotlib's object API (no pyplot); the PNG is written atomically.
"""
import json
import math
import os
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Sequence, Tuple

from ..errors import BadInputError, DataNotFoundError
from ..io import save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PANEL_INCHES = (4.2, 3.0)  # width, height of one panel; the figure is 3 x 2 panels
ROLES = {"student": "-", "teacher": "--"}  # line style per network
BRANCHES = {"image": ("Image", "tab:blue"), "image_star": ("Image*", "tab:green"),
            "point": ("Point cloud", "tab:orange")}
LABELS = {"pl_from_image": "from image", "pl_kept": "kept", "pl_acc": "pseudo-label accuracy",
          "pl_agree": "teacher image/point agreement"}
LOSSES = ("loss", "loss_cls", "loss_fair", "loss_align", "loss_mim", "loss_mpm", "loss_gl")


def _branch_keys(metric: str) -> Tuple[str, ...]:
    return tuple(f"{who}_{branch}_{metric}" for branch in BRANCHES for who in ROLES)


PANELS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("(a) top-1 accuracy (%)", _branch_keys("top1")),
    ("(b) entropy: KL(softmax || uniform), nats", _branch_keys("entropy")),
    ("(c) bias: KL(class histogram || uniform), nats", _branch_keys("bias")),
    ("(d) pseudo-labels: share from image, kept", ("pl_from_image", "pl_kept")),
    ("(e) pseudo-label accuracy, agreement (%)", ("pl_acc", "pl_agree")),
    ("(f) losses", LOSSES),
)
FRACTION_PANEL = 3  # panel (d) holds fractions in [0, 1], shown as percentages


def read_history(path: str) -> List[Dict[str, Any]]:
    """The records of a run's ``history.json`` (a JSON list of per-epoch objects).

    Args:
        path: the ``history.json`` file.

    Raises:
        DataNotFoundError: the file does not exist.
        BadInputError: it is not valid JSON or not a list of objects.
    """
    hint = "pass --run a run folder whose training has written history.json (with ckpt_latest.pth)"
    if not os.path.isfile(path):
        raise DataNotFoundError(f"'{path}' does not exist: {hint}.")
    try:
        with open(path) as f:
            history = json.load(f)
    except (OSError, ValueError) as error:  # ValueError: bad JSON or bad UTF-8
        raise BadInputError(f"'{path}' cannot be read as JSON ({error}): {hint}.") from None
    if not isinstance(history, list) or not all(isinstance(record, dict) for record in history):
        raise BadInputError(f"'{path}' holds a {type(history).__name__}, not a list of per-epoch objects: {hint}.")
    return history


def series(history: Sequence[Mapping[str, Any]], key: str) -> Tuple[List[float], List[float]]:
    """``(epochs, values)`` of ``key`` over the records that hold a finite number for it.

    Args:
        history: the per-epoch records, in epoch order; a record without ``epoch`` counts by its position.
        key: the figure, e.g. ``teacher_point_top1``.
    """
    points = [(record.get("epoch", i), record.get(key)) for i, record in enumerate(history)]
    points = [(float(e), float(v)) for e, v in points
              if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return [e for e, _ in points], [v for _, v in points]


def _style(key: str) -> Dict[str, str]:
    """Label, colour and line style of ``key``: per-branch figures by branch (colour) and network (style)."""
    who, _, rest = key.partition("_")
    branch = rest.rsplit("_", 1)[0]
    if who in ROLES and branch in BRANCHES:
        name, colour = BRANCHES[branch]
        return {"label": f"{who} {name}", "color": colour, "linestyle": ROLES[who]}
    return {"label": LABELS.get(key, key)}


def self_training_figure(history: Sequence[Mapping[str, Any]], title: str = "", dpi: int = 100) -> "Figure":
    """The six-panel figure of :data:`PANELS` (3 x 2, each :data:`PANEL_INCHES`), one line per present series.

    Args:
        history: the per-epoch records, in epoch order (epoch 0 = before training).
        title: the figure's title (e.g. the run folder's name).
        dpi: resolution.

    Raises:
        BadInputError: ``history`` is empty.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    if not history:
        raise BadInputError("The training history holds no epoch: draw it once the run has validated at least once "
                            "(history.json is written with ckpt_latest.pth).")
    fig = Figure(figsize=(3 * PANEL_INCHES[0], 2 * PANEL_INCHES[1]), dpi=dpi, layout="constrained")
    axes = fig.subplots(2, 3, sharex=True).flat  # one epoch axis for all panels
    drawn = set()  # every epoch with a point
    for index, (ax, (name, keys)) in enumerate(zip(axes, PANELS)):
        for key in keys:
            epochs, values = series(history, key)
            if values:
                ax.plot(epochs, values, marker="o", markersize=3, **_style(key))
                drawn.update(epochs)
        ax.set_title(name, fontsize="medium")
        if index >= 3:  # the top row shares the bottom row's epoch ticks
            ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if index == FRACTION_PANEL:
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        if ax.get_lines():
            ax.legend(fontsize="x-small", frameon=False)
        else:
            ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center", va="center", color="0.5")
    if len(drawn) == 1:  # a single epoch: widen the axis so that its ticks stay integers
        axes[0].set_xlim(min(drawn) - 1, min(drawn) + 1)
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig


def plot_self_training(history: Sequence[Mapping[str, Any]], out: str, title: str = "", dpi: int = 100,
                       config_key: str = "--out") -> None:
    """Draw the self-training curves of ``history`` (:func:`self_training_figure`) into ``out`` (PNG).

    Args:
        history: the per-epoch records (``history.json``), in epoch order.
        out: the image file.
        title: the figure's title (e.g. the run folder's name).
        dpi: resolution.
        config_key: the option or config key that chose where ``out`` lies, named when it cannot be written.

    Raises:
        BadInputError: ``history`` is empty.
    """
    save_figure(self_training_figure(history, title, dpi), out, dpi, config_key)
