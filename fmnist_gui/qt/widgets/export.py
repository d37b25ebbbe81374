"""Plots to one PNG or SVG file, drawn as they are on screen.

Every plot is drawn 1:1 from its scene (the size it has in the window), so text,
legends and data keep the proportions the user sees; several plots are composed
into one picture, row by row. pyqtgraph's own exporters resize the scene for a
PNG (text stays small while the lines grow) and rewrite Qt's SVG, which newer Qt
versions break; both gave pictures unlike the screen.

The SVG is Qt's ``QSvgGenerator`` at the screen's logical DPI: pyqtgraph sizes
markers and curves in device pixels, and at the generator's default 72 DPI they
were drawn a quarter larger than the axes, off their ticks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, QSize
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtSvg import QSvgGenerator

PNG_SCALE = 2  # device pixels per screen pixel: crisp in documents and slides
GAP = 8  # between plots, in screen pixels
MIN_SIZE = QSize(480, 300)  # a plot never laid out (its tab never shown) gets this


def export_plots(rows: Sequence[Sequence[pg.PlotWidget]], path: str | Path) -> Path:
    """Compose ``rows`` of plots into the one file ``path`` (PNG or SVG, by its suffix).

    Raises ``ValueError`` for another suffix or no plot, and ``OSError`` when
    nothing could be written, both naming the file and the fix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise ValueError(
            f"cannot export a plot as {path.name!r}: use a name ending in .png or .svg"
        )
    plots = [list(row) for row in rows if row]
    if not plots:
        raise ValueError("there is no plot to export yet")
    placed, size = _layout(plots)
    background = QColor(plots[0][0].backgroundBrush().color())
    if suffix == ".png":
        image = QImage(size * PNG_SCALE, QImage.Format.Format_ARGB32)
        image.setDevicePixelRatio(PNG_SCALE)
        image.fill(background)
        painter = QPainter(image)
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            _paint(painter, placed)
        finally:
            painter.end()
        if not image.save(str(path)):
            raise OSError(f"could not write {path}; check the folder exists and is writable")
    else:
        generator = QSvgGenerator()
        generator.setFileName(str(path))
        generator.setResolution(plots[0][0].logicalDpiX())
        generator.setSize(size)
        generator.setViewBox(QRectF(0, 0, size.width(), size.height()))
        generator.setTitle(", ".join(_title(p) for row in plots for p in row))
        painter = QPainter(generator)
        try:
            painter.fillRect(QRectF(0, 0, size.width(), size.height()), background)
            _paint(painter, placed)
        finally:
            painter.end()
    if not path.exists() or path.stat().st_size == 0:
        raise OSError(f"could not write {path}; check the folder exists and is writable")
    return path


def export_plot(plot: pg.PlotWidget, path: str | Path) -> Path:
    """One plot to ``path`` (PNG or SVG), as ``export_plots`` draws it."""
    return export_plots([[plot]], path)


def plot_rect(plot: pg.PlotWidget) -> QRectF:
    """The part of ``plot``'s scene that is drawn: its ``PlotItem``, laid out if it never was."""
    item = plot.getPlotItem()
    rect = item.sceneBoundingRect()
    if rect.width() < MIN_SIZE.width() / 2 or rect.height() < MIN_SIZE.height() / 2:
        item.setGeometry(QRectF(0, 0, MIN_SIZE.width(), MIN_SIZE.height()))
        item.layout.activate()
        rect = item.sceneBoundingRect()
    return rect


def _layout(
    rows: list[list[pg.PlotWidget]],
) -> tuple[list[tuple[pg.PlotWidget, QRectF, QPointF]], QSize]:
    placed = []
    y, width = 0.0, 0.0
    for row in rows:
        x, height = 0.0, 0.0
        for plot in row:
            source = plot_rect(plot)
            placed.append((plot, source, QPointF(x, y)))
            x += source.width() + GAP
            height = max(height, source.height())
        width = max(width, x - GAP)
        y += height + GAP
    return placed, QSize(round(width), round(y - GAP))


def _paint(painter: QPainter, placed: list[tuple[pg.PlotWidget, QRectF, QPointF]]) -> None:
    for plot, source, at in placed:
        target = QRectF(at, source.size())
        painter.fillRect(target, plot.backgroundBrush())
        # Export mode, as pyqtgraph's exporters set it: markers are drawn as shapes,
        # not stamped from the screen's pixmap cache (blurred or doubled in an SVG).
        items = [i for i in plot.scene().items() if hasattr(i, "setExportMode")]
        for item in items:
            item.setExportMode(True, {"antialias": True, "painter": painter})
        try:
            plot.scene().render(painter, target, source)
        finally:
            for item in items:
                item.setExportMode(False)


def _title(plot: pg.PlotWidget) -> str:
    return plot.getPlotItem().titleLabel.text or "plot"
