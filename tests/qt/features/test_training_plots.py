"""The Training tab's plots: legends stay clear of the data at any window size."""

from __future__ import annotations

import math

import pytest
from PySide6.QtCore import QPointF

from fmnist_gui.qt.features.training.plots import TrainingPlots
from fmnist_gui.training.events import EpochEnd


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
    qtbot.addWidget(plots)
    plots.resize(*size)
    plots.show()
    qtbot.waitExposed(plots)
    steps = 100
    for step in range(1, steps * epochs + 1):
        plots.add_loss(step, 2.3 * math.exp(-step / 150) + 0.3)
    for n in range(1, epochs + 1):
        plots.add_epoch(_epoch(n, 1.8 - 0.4 * n, 0.4 + 0.1 * n))
    plots.draw(steps_per_epoch=steps, planned_steps=steps * 10)
    qtbot.wait(50)  # layouts settle
    curves = {
        plots.loss_plot: [plots.raw_curve, plots.smooth_curve],
        plots.test_loss_plot: [plots.test_loss_curve, plots.train_epoch_curve],
        plots.accuracy_plot: [plots.accuracy_curve],
    }
    for plot, plot_curves in curves.items():
        item = plot.getPlotItem()
        legend = item.legend.sceneBoundingRect()
        assert legend.height() >= 10, "the legend is readable"
        names = [label.text for _, label in item.legend.items]
        assert names == [c.name() for c in plot_curves]
        # Outside the data area altogether, and so clear of every point.
        assert not legend.intersects(item.getViewBox().sceneBoundingRect())
        for curve in plot_curves:
            points = _data_points(curve)
            assert points
            assert not any(legend.contains(p) for p in points)
        assert item.sceneBoundingRect().contains(legend), "the legend is not clipped"
