"""Exported plots: one file as named, drawn as on screen; the SVG renders as the PNG does."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

from fmnist_gui.analysis.runs import RunList
from fmnist_gui.qt.features.runs.runs_view import RunsView
from fmnist_gui.qt.features.training.plots import TrainingPlots
from fmnist_gui.qt.widgets.export import PNG_SCALE, export_plots
from fmnist_gui.qt.widgets.plotting import RunPlots
from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.events import EpochEnd
from tests.support.qt_helpers import show_widget


@pytest.fixture
def plots(qtbot):
    widget = TrainingPlots()
    show_widget(qtbot, widget, 1000, 560)
    for step in range(1, 301):
        widget.add_loss(step, 2.3 * math.exp(-step / 150) + 0.3)
    for n in (1, 2, 3):
        widget.add_epoch(EpochEnd(n, 1.85 - 0.4 * n, 1.8 - 0.4 * n, 0.4 + 0.1 * n, 1, 1, 1))
    widget.draw(steps_per_epoch=100, planned_steps=1000)
    qtbot.wait(50)
    return widget


def _array(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGB32)
    data = np.frombuffer(image.constBits(), np.uint8)
    # A copy: the converted image (and the memory under the view) dies with this call.
    return data.reshape(image.height(), image.bytesPerLine() // 4, 4)[:, : image.width(), :3].copy()


def _svg_image(path, width: int, height: int) -> QImage:
    renderer = QSvgRenderer(str(path))
    assert renderer.isValid()
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    renderer.render(painter, QRectF(0, 0, width, height))
    painter.end()
    return image


def _extent_of(pixels: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    # BGRA in memory: compare against (b, g, r).
    target = np.array(color[::-1], dtype=np.int32)
    close = np.abs(pixels.astype(np.int32) - target).sum(axis=2) < 60
    ys, xs = np.nonzero(close)
    assert len(xs) > 20, f"colour {color} is drawn"
    return np.array([xs.min(), xs.max(), ys.min(), ys.max()])


def test_svg_renders_back_as_the_png(tmp_path, plots):
    rows = [[plots.loss_plot], [plots.test_loss_plot, plots.accuracy_plot]]
    png = export_plots(rows, tmp_path / "plots.png")
    svg = export_plots(rows, tmp_path / "plots.svg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plots.png", "plots.svg"]
    image = QImage(str(png))
    # One picture, the plots as laid out on screen, at twice their on-screen size.
    loss = plots.loss_plot.getPlotItem().sceneBoundingRect()
    assert image.width() == pytest.approx(PNG_SCALE * loss.width(), abs=PNG_SCALE * 2)
    legend = plots.test_loss_plot.getPlotItem().legend.sceneBoundingRect()
    assert legend.height() * PNG_SCALE >= 30, "legend text is readable"
    back = _svg_image(svg, image.width(), image.height())
    png_pixels, svg_pixels = _array(image), _array(back)
    # The orange test-loss curve and markers, the green accuracy: same place in both.
    for color in ((214, 94, 0), (0, 140, 70), (31, 87, 180)):
        a, b = _extent_of(png_pixels, color), _extent_of(svg_pixels, color)
        assert np.abs(a - b).max() <= 3 * PNG_SCALE, (color, a, b)
    # And on the whole the same picture (downscaled, to forgive antialiasing).
    small = [
        _array(i.scaled(image.width() // 8, image.height() // 8)).astype(float)
        for i in (image, back)
    ]
    assert np.abs(small[0] - small[1]).mean() < 8
    # No line is drawn in a scaled group: a renderer without non-scaling strokes
    # (librsvg 2.54, ImageMagick's own) would scale its width with the data.
    assert _scaled_lines(svg) == []


def _scaled_lines(svg) -> list[str]:
    ns = "{http://www.w3.org/2000/svg}"
    found = []
    for group in ET.parse(svg).getroot().iter(f"{ns}g"):
        matrix = re.fullmatch(r"matrix\(([^)]*)\)", group.get("transform", ""))
        if matrix is None:
            continue
        a, b, c, d = (float(v) for v in matrix.group(1).split(",")[:4])
        scaled = (abs(a), b, c, abs(d)) != (1.0, 0.0, 0.0, 1.0)
        found += [group.get("transform") for child in group if scaled and child.tag != f"{ns}text"]
    return found


def test_exporting_a_small_plot_leaves_the_window_as_it_was(tmp_path, qtbot):
    # A plot too small to read is exported at a readable size, then put back.
    runs = RunList()
    small = RunPlots(runs)
    show_widget(qtbot, small, 300, 200)
    item = small.loss_plot.getPlotItem()
    before = item.geometry()
    assert before.width() < 240
    for suffix in ("png", "svg"):
        export_plots([[small.loss_plot]], tmp_path / f"small.{suffix}")
        assert item.geometry() == before
    image = QImage(str(tmp_path / "small.png"))
    assert image.width() >= PNG_SCALE * 480


def test_runs_view_writes_the_one_file_the_user_named(tmp_path, qtbot, plots):
    runs = RunList()
    run = runs.add("SGD", TrainConfig(epochs=2), "race", steps_per_epoch=2)
    runs.record(run.id, batch_losses=[2.3, 2.2, 2.0, 1.9])
    overlays = RunPlots(runs)
    qtbot.addWidget(overlays)
    view = RunsView(
        runs,
        plots=lambda: [
            [plots.loss_plot],
            [plots.test_loss_plot, plots.accuracy_plot],
            [overlays.loss_plot, overlays.accuracy_plot],
        ],
    )
    qtbot.addWidget(view)
    written = view.export_plots(tmp_path / "runs.png")
    assert written == [tmp_path / "runs.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["runs.png"]
    image = QImage(str(written[0]))
    # The overlays were never shown: they are drawn at a readable size, not squashed.
    assert image.height() > PNG_SCALE * 3 * 250
    assert image.width() >= PNG_SCALE * 900
