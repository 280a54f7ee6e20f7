"""Training curves: the panels of a run's per-epoch figures and the PNG (history.json across a resume:
tests/engine/test_resume.py)."""
from plugin.vis.training_curves import curve_panels, plot_training_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_figures_are_grouped_into_panels():
    history = [{"epoch": 1, "loss": 2.0, "loss_local": 1.5, "val_oa": 50.0, "holdout_top1": 40.0, "lr": 1e-3,
                "data_wait": 0.1, "ema_momentum": 0.99, "local_regions": 512.0},
               {"epoch": 2, "loss": 1.0, "loss_local": 0.5, "lr": 5e-4, "data_wait": 0.2, "ema_momentum": 0.99,
                "local_regions": 512.0}]
    assert curve_panels(history) == {"loss": ["loss", "loss_local"], "validation": ["val_oa", "holdout_top1"],
                                     "lr": ["lr"], "data wait": ["data_wait"], "other": ["ema_momentum"]}


def test_the_plot_is_a_png_written_atomically(tmp_path):
    out = tmp_path / "curves.png"
    plot_training_curves([{"epoch": 1, "loss": 2.0, "lr": 0.0}, {"epoch": 2, "loss": 1.0, "lr": 0.0}], str(out))
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temporary file left
