"""The Runs tab: show/hide, rename, remove, and the exports, with real files."""

from __future__ import annotations

import csv

import pytest
from PySide6.QtCore import Qt

from fmnist_gui.analysis.runs import CSV_COLUMNS, RunList
from fmnist_gui.qt.features.runs import runs_view
from fmnist_gui.qt.features.runs.runs_view import RunsView
from fmnist_gui.qt.widgets.export import export_plot
from fmnist_gui.qt.widgets.plotting import RunPlots
from fmnist_gui.training.config import TrainConfig
from tests.support.qt_helpers import show_widget


def _runs() -> RunList:
    runs = RunList()
    for name, optimizer in (("SGD lr=0.001", "sgd"), ("Adam lr=0.001", "adam")):
        run = runs.add(name, TrainConfig(epochs=2, optimizer=optimizer), "race")
        for n in (1, 2):
            runs.record(
                run.id,
                batch_losses=[2.3 - 0.1 * n, 2.2 - 0.1 * n],
                epoch={
                    "epoch": n,
                    "train_loss": 2.0,
                    "test_loss": 1.9,
                    "test_accuracy": 0.3 * n,
                    "train_seconds": 1.0,
                    "test_seconds": 0.1,
                    "samples_per_second": 100.0,
                },
            )
    return runs


@pytest.fixture
def views(qtbot):
    runs = _runs()
    plots = RunPlots(runs)
    table = RunsView(runs, plots=lambda: [[plots.loss_plot, plots.accuracy_plot]])
    for widget in (plots, table):
        qtbot.addWidget(widget)
        widget.show()
    return runs, plots, table


def test_hide_rename_remove(qtbot, views):
    runs, plots, table = views
    assert plots.curve_names() == ["SGD lr=0.001", "Adam lr=0.001"]
    first, second = list(runs)
    table.table.item(table.row_of(first.id), 0).setCheckState(Qt.CheckState.Unchecked)
    assert not first.visible
    qtbot.waitUntil(lambda: plots.curve_names() == ["Adam lr=0.001"])
    table.table.item(table.row_of(second.id), 1).setText("my adam")
    assert second.name == "my adam"
    qtbot.waitUntil(lambda: plots.curve_names() == ["my adam"])
    table.table.selectRow(table.row_of(second.id))
    table.remove_button.click()
    assert [r.id for r in runs] == [first.id]
    qtbot.waitUntil(lambda: table.table.rowCount() == 1)


def test_csv_export_through_the_dialog(monkeypatch, tmp_path, views):
    runs, _, table = views
    target = tmp_path / "metrics.csv"
    monkeypatch.setattr(
        runs_view.QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "CSV files (*.csv)")
    )
    messages = []
    table.message.connect(messages.append)
    table.csv_button.click()
    with open(target, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["run_name"], r["epoch"], r["optimizer"]) for r in rows] == [
        ("SGD lr=0.001", "1", "sgd"),
        ("SGD lr=0.001", "2", "sgd"),
        ("Adam lr=0.001", "1", "adam"),
        ("Adam lr=0.001", "2", "adam"),
    ]
    assert messages == [f"Wrote 4 rows to {target}"]


def test_plots_export_to_png_and_svg(tmp_path, views):
    _, plots, table = views
    png = export_plot(plots.loss_plot, tmp_path / "loss.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = export_plot(plots.accuracy_plot, tmp_path / "acc.svg")
    assert "<svg" in svg.read_text()
    written = table.export_plots(tmp_path / "all.svg")
    assert written == [tmp_path / "all.svg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acc.svg", "all.svg", "loss.png"]
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        export_plot(plots.loss_plot, tmp_path / "loss.jpg")


def test_loss_curve_is_smoothed_incrementally_as_tensorboard_does(qtbot, views):
    import numpy as np

    from fmnist_gui.qt.widgets.plotting import SMOOTHING, debiased_ema

    runs, plots, _ = views
    run = list(runs)[0]
    for chunk in ([1.5, 1.2], [0.9, 1.1, 0.7]):  # losses arriving frame by frame
        runs.record(run.id, batch_losses=chunk)
        plots.redraw()
    x, y = plots._curves[run.id][0].getData()
    expected, _ = debiased_ema(run.batch_losses, SMOOTHING)
    # Against epochs: step n of the run is at n / (steps per epoch).
    steps = np.arange(1, len(run.batch_losses) + 1)
    assert np.allclose(x, steps / run.epoch_length())
    assert np.allclose(y, expected)


def test_overlay_axes_refit_when_the_run_list_is_replaced(qtbot, views):
    runs, plots, _ = views
    plots.resize(900, 400)
    qtbot.waitUntil(lambda: plots.curve_names() == [r.name for r in runs])
    for plot in (plots.loss_plot, plots.accuracy_plot):
        plot.getPlotItem().getViewBox().scaleBy((0.2, 0.2))  # the user zoomed in
    # An opened checkpoint brings its own list: one long run with low losses.
    other = RunList()
    run = other.add("imported", TrainConfig(epochs=8), "training", steps_per_epoch=100)
    other.record(run.id, batch_losses=[0.4] * 800)
    for n in range(1, 9):
        other.record(
            run.id,
            epoch={
                "epoch": n,
                "train_loss": 0.4,
                "test_loss": 0.4,
                "test_accuracy": 0.8 + 0.01 * n,
                "train_seconds": 1.0,
                "test_seconds": 0.1,
                "samples_per_second": 100.0,
            },
        )
    runs.load_state(other.to_state())
    qtbot.waitUntil(lambda: plots.curve_names() == ["imported"])
    plots.redraw()
    qtbot.wait(50)
    (x0, x1), (y0, y1) = plots.loss_plot.getPlotItem().getViewBox().viewRange()
    assert x0 <= 0.01
    assert x1 >= 8.0
    assert y0 <= 0.4 <= y1
    (x0, x1), (y0, y1) = plots.accuracy_plot.getPlotItem().getViewBox().viewRange()
    assert x0 <= 1
    assert x1 >= 8
    assert y0 <= 81
    assert y1 >= 88


def test_a_narrow_runs_table_clips_no_header(qtbot):
    # The Runs tab at 1024x640: the table is about 675 px wide.
    runs = _runs()
    runs.add(
        "Training: Adam lr=0.001",
        TrainConfig(
            optimizer="adam",
            optimizer_params={"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
        ),
        "training",
    )
    view = RunsView(runs)
    show_widget(qtbot, view, 675, 300)
    header = view.table.horizontalHeader()
    for column, title in enumerate(view.COLUMNS):
        assert header.sectionSize(column) >= header.sectionSizeHint(column), title
    # The settings' whole text is in the tooltip.
    settings = view.COLUMNS.index("Settings")
    assert "betas=0.9,0.999" in view.table.item(2, settings).toolTip()
