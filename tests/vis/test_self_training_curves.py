"""Cross-MoST self-training curves: :mod:`plugin.vis.self_training_curves` and ``tools/visualize.py selftrain``."""
import json

import pytest
from PIL import Image

from plugin.errors import BadInputError
from plugin.vis import plot_self_training
from plugin.vis import self_training_curves as curves

from ..conftest import load_tool

DPI = 30
PNG = b"\x89PNG\r\n\x1a\n"
SIZE = (round(3 * curves.PANEL_INCHES[0] * DPI), round(2 * curves.PANEL_INCHES[1] * DPI))


def _history(epochs: int = 4, image_star: bool = True):
    """Epochs 0..epochs-1 with every key of the spec (epoch 0 without pl_* / loss_*), values that tell keys apart."""
    branches = ("image", "image_star", "point") if image_star else ("image", "point")
    history = []
    for epoch in range(epochs):
        record = {"epoch": epoch}
        for b, branch in enumerate(branches):
            for w, who in enumerate(("student", "teacher")):
                record[f"{who}_{branch}_top1"] = 40.0 + 10 * b + w + epoch
                record[f"{who}_{branch}_entropy"] = 2.0 - 0.1 * epoch - 0.01 * b
                record[f"{who}_{branch}_bias"] = 0.5 + 0.01 * epoch + w
        if epoch:
            record.update(pl_from_image=0.4 + 0.05 * epoch, pl_kept=0.5, pl_acc=70.0 + epoch, pl_conf=0.8,
                          pl_agree=60.0, lr=1e-3, ema_momentum=0.999,
                          **{key: 1.0 / epoch + i for i, key in enumerate(curves.LOSSES)})
        history.append(record)
    return history


def _lines(fig):
    """Panel index -> {legend label: (x, y)} of every line drawn."""
    return {i: {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}
            for i, ax in enumerate(fig.axes)}


def test_the_lines_carry_the_history_values():
    fig = curves.self_training_figure(_history())
    lines = _lines(fig)
    assert len(lines) == 6 and all(lines.values())  # every panel has data
    assert len(lines[0]) == len(lines[1]) == len(lines[2]) == 6  # 3 branches x student/teacher
    assert lines[0]["teacher Point cloud"] == ([0, 1, 2, 3], [61.0, 62.0, 63.0, 64.0])
    assert lines[0]["student Image*"][1] == [50.0, 51.0, 52.0, 53.0]
    assert lines[2]["teacher Image"][1] == pytest.approx([1.5, 1.51, 1.52, 1.53])
    assert lines[3]["from image"] == ([1, 2, 3], pytest.approx([0.45, 0.5, 0.55]))  # epoch 0 has no pl_*
    assert set(lines[4]) == {"pseudo-label accuracy", "teacher image/point agreement"}
    assert list(lines[5]) == list(curves.LOSSES)
    assert lines[5]["loss_gl"][1] == pytest.approx([7.0, 6.5, 6 + 1 / 3])
    styles = {line.get_label(): (line.get_linestyle(), line.get_color()) for line in fig.axes[1].get_lines()}
    assert styles["student Point cloud"] == ("-", "tab:orange")
    assert styles["teacher Point cloud"] == ("--", "tab:orange")


def test_missing_keys_are_skipped_and_one_record_draws(tmp_path):
    history = _history(image_star=False)
    history[2].pop("student_point_top1")
    history[3]["loss_mim"] = None  # NaN in JSON, as save_json writes it
    lines = _lines(curves.self_training_figure(history))
    assert len(lines[0]) == 4 and "student Image*" not in lines[0]
    assert lines[0]["student Point cloud"][0] == [0, 1, 3]
    assert lines[5]["loss_mim"][0] == [1, 2]
    fig = curves.self_training_figure(history[:1])  # epoch 0 alone: no pseudo-labels, no losses
    assert [len(lines) for lines in _lines(fig).values()] == [4, 4, 4, 0, 0, 0]
    assert fig.axes[5].get_xlim() == (-1.0, 1.0)  # one shared epoch axis, widened around epoch 0
    out = tmp_path / "one.png"
    plot_self_training(history[:1], str(out), "epoch 0", DPI)
    assert Image.open(out).size == SIZE


def test_the_png_is_written_atomically_at_the_expected_size(tmp_path):
    out = tmp_path / "curves.png"
    plot_self_training(_history(), str(out), "run", DPI)
    assert out.read_bytes()[:8] == PNG
    assert Image.open(out).size == SIZE
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temporary file left


def test_an_empty_history_is_one_sentence(tmp_path):
    with pytest.raises(BadInputError, match="holds no epoch"):
        plot_self_training([], str(tmp_path / "x.png"))
    assert not (tmp_path / "x.png").exists()


@pytest.fixture(scope="module")
def visualize():
    return load_tool("visualize").main


def test_selftrain_command_draws_the_run(visualize, tmp_path, capsys):
    run = tmp_path / "cross_most-20250101"
    run.mkdir()
    (run / "history.json").write_text(json.dumps(_history()))
    assert visualize(["selftrain", "--run", str(run), "--dpi", str(DPI)]) == 0
    assert Image.open(run / "self_training.png").size == SIZE
    assert "4 epoch record(s)" in capsys.readouterr().out
    out = tmp_path / "figs" / "st.png"
    assert visualize(["selftrain", "--run", str(run), "--out", str(out), "--dpi", str(DPI)]) == 0
    assert out.read_bytes()[:8] == PNG


@pytest.mark.parametrize("case", ["no run", "no history", "corrupt", "not a list", "empty", "unwritable"])
def test_selftrain_errors_are_one_sentence(visualize, tmp_path, capsys, case):
    run = tmp_path / "run"
    run.mkdir()
    history = {"corrupt": "[{", "not a list": "{}", "empty": "[]"}.get(case, json.dumps(_history(2)))
    if case != "no history":
        (run / "history.json").write_text(history)
    (tmp_path / "file").write_text("")
    args = ["selftrain", "--run", str(tmp_path / "nope" if case == "no run" else run), "--dpi", str(DPI)]
    if case == "unwritable":
        args += ["--out", str(tmp_path / "file" / "st.png")]  # a path through a regular file
    assert visualize(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and err.count("\n") == 0
    assert {"no run": "Run folder", "no history": "does not exist", "corrupt": "cannot be read as JSON",
            "not a list": "holds a dict", "empty": "holds no epoch",
            "unwritable": "choose a writable --out"}[case] in err
    assert not (run / "self_training.png").exists()
