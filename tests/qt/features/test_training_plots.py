"""The Training tab's plots: legends clear of the data at any size, axes that fit, lr from 0."""

from __future__ import annotations

import math

import pytest
from PySide6.QtCore import QPointF

from fmnist_gui.qt.features.training.plots import TrainingPlots
from fmnist_gui.training.events import EpochEnd
from tests.support.qt_helpers import show_widget


def _epoch(n: int, test_loss: float, accuracy: float) -> EpochEnd:
    return EpochEnd(
        epoch=n,
        train_loss=test_loss + 0.05,
        test_loss=test_loss,
        test_accuracy=accuracy,
        train_seconds=1.0,
        test_seconds=0.1,
        samples_per_second=1000.0,
    )


def _data_points(curve) -> list[QPointF]:
    xs, ys = curve.getData()
    if xs is None:
        return []
    view = curve.getViewBox()
    return [view.mapViewToScene(QPointF(float(x), float(y))) for x, y in zip(xs, ys, strict=True)]


@pytest.mark.parametrize("size", [(1000, 650), (1280, 800), (560, 420)])
@pytest.mark.parametrize("epochs", [1, 3])
def test_legends_cover_no_data(qtbot, size, epochs):
    plots = TrainingPlots()
    show_widget(qtbot, plots, *size)
    steps = 100
    for step in range(1, steps * epochs + 1):
        plots.add_loss(step, 2.3 * math.exp(-step / 150) + 0.3)
    for n in range(1, epochs + 1):
        plots.add_epoch(_epoch(n, 1.8 - 0.4 * n, 0.4 + 0.1 * n))
    plots.draw(steps_per_epoch=steps, planned_steps=steps * 10)
    plots.set_lrs([1e-3 * (1 - step / 1000) for step in range(steps * epochs)])
    qtbot.wait(50)  # layouts settle
    curves = {
        plots.loss_plot: [plots.raw_curve, plots.smooth_curve, plots.lr_curve],
        plots.test_loss_plot: [plots.test_loss_curve, plots.train_epoch_curve],
        plots.accuracy_plot: [plots.accuracy_curve],
    }
    for plot, plot_curves in curves.items():
        item = plot.getPlotItem()
        legend = item.legend.sceneBoundingRect()
        assert legend.height() >= 10, "the legend is readable"
        names = item.legend.names()
        assert names == [c.name() for c in plot_curves]
        # Outside the data area altogether, and so clear of every point.
        assert not legend.intersects(item.getViewBox().sceneBoundingRect())
        for curve in plot_curves:
            points = _data_points(curve)
            assert points
            assert not any(legend.contains(p) for p in points)
        assert item.sceneBoundingRect().contains(legend), "the legend is not clipped"


def _in_view(plot, xs, ys) -> bool:
    (x0, x1), (y0, y1) = plot.getPlotItem().getViewBox().viewRange()
    return x0 <= min(xs) and max(xs) <= x1 and y0 <= min(ys) and max(ys) <= y1


def _spans(plot, xs, ys) -> tuple[float, float]:
    (x0, x1), (y0, y1) = plot.getPlotItem().getViewBox().viewRange()
    return (max(xs) - min(xs)) / (x1 - x0), (max(ys) - min(ys)) / (y1 - y0)


def test_axes_refit_after_a_reset_and_an_import(qtbot):
    plots = TrainingPlots()
    show_widget(qtbot, plots, 1000, 650)
    # A long first run with high losses, zoomed by the user.
    for step in range(1, 3001):
        plots.add_loss(step, 5.0 + math.sin(step))
    for n in range(1, 11):
        plots.add_epoch(_epoch(n, 5.0 - 0.1 * n, 0.1 + 0.01 * n))
    plots.draw(steps_per_epoch=300, planned_steps=3000)
    plots.loss_plot.getPlotItem().getViewBox().scaleBy((0.5, 0.5))
    plots.test_loss_plot.getPlotItem().getViewBox().scaleBy((0.5, 0.5))
    plots.accuracy_plot.getPlotItem().getViewBox().scaleBy((0.5, 0.5))
    # Reset, then an imported history that is short and low.
    plots.clear()
    losses = [0.5 - 0.001 * i for i in range(200)]
    epochs = [_epoch(1, 0.45, 0.85), _epoch(2, 0.40, 0.87)]
    plots.set_history(losses, epochs)
    plots.draw(steps_per_epoch=100, planned_steps=200)
    qtbot.wait(50)
    steps = list(range(1, 201))
    assert _in_view(plots.loss_plot, steps, losses)
    x_fill, y_fill = _spans(plots.loss_plot, steps, losses)
    assert x_fill > 0.9
    assert y_fill > 0.3
    for plot, values in (
        (plots.test_loss_plot, [0.45, 0.40]),
        (plots.accuracy_plot, [85.0, 87.0]),
    ):
        assert _in_view(plot, [1, 2], values)
        x_fill, y_fill = _spans(plot, [1, 2], values)
        title = plot.getPlotItem().titleLabel.text
        assert x_fill > 0.5, title
        assert y_fill > 0.3, title


def test_change_marks_follow_a_history_that_got_shorter(qtbot):
    plots = TrainingPlots()
    qtbot.addWidget(plots)
    changes = [
        {"step": 10, "name": "lr", "value": 0.1},
        {"step": 10, "name": "momentum", "value": 0.5},
        {"step": 30, "name": "lr", "value": 0.01},
    ]
    plots.mark_step(20, "diverged")
    plots.show_changes(changes[:1])
    plots.show_changes(changes)  # only the new ones are added
    assert plots.marks == [(20, "diverged"), (10, "lr 0.1"), (10, "momentum 0.5"), (30, "lr 0.01")]
    plots.show_changes(changes[:2])  # rolled back before step 30: marked again, by step
    assert plots.marks == [(20, "diverged"), (10, "lr 0.1, momentum 0.5")]
    plots.clear_marks()
    plots.show_changes(changes)
    assert plots.marks == [(10, "lr 0.1, momentum 0.5"), (30, "lr 0.01")]


@pytest.mark.parametrize(
    "lrs",
    [
        [1e-3] * 300,  # the tutorial's constant lr
        [1e-3 * (1 + math.cos(math.pi * i / 300)) / 2 for i in range(300)],  # cosine to 0
        [0.5] * 10 + [0.05] * 290,  # a live change to a tenth
    ],
    ids=["constant", "cosine", "live-change"],
)
def test_the_lr_axis_starts_at_zero_and_shows_the_whole_curve(qtbot, lrs):
    plots = TrainingPlots()
    show_widget(qtbot, plots, 1000, 650)
    for step, _ in enumerate(lrs, start=1):
        plots.add_loss(step, 1.0)
    plots.draw(steps_per_epoch=100, planned_steps=len(lrs))
    plots.set_lrs(lrs)
    qtbot.wait(50)
    low, high = plots.lr_view.viewRange()[1]
    # No negative learning rates on the axis, and the curve is in view, in its
    # upper part (a flat line used to sit at "0" in the middle of -0.5..0.5).
    assert low == 0.0
    assert max(lrs) <= high <= 1.5 * max(lrs)
    _, shown = plots.lr_curve.getData()
    assert list(shown) == lrs
