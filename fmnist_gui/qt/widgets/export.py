"""Plots to one PNG or SVG file, drawn as they are on screen.

Every plot is drawn 1:1 from its scene (the size it has in the window), so text,
legends and data keep the proportions the user sees; several plots are composed
into one picture, row by row. pyqtgraph's own exporters resize the scene for a
PNG (text stays small while the lines grow) and rewrite Qt's SVG, which newer Qt
versions break; both gave pictures unlike the screen.

The SVG is Qt's ``QSvgGenerator`` at the screen's logical DPI: pyqtgraph sizes
markers and curves in device pixels, and at the generator's default 72 DPI they
were drawn a quarter larger than the axes, off their ticks.

Qt writes each curve in data units inside a group that scales them to the page
(``matrix(0.59,0,0,-89520,…)`` for an lr of 0.001), and keeps the line thin with
``vector-effect="non-scaling-stroke"``. Renderers without that property (librsvg
2.54, ImageMagick's own) scale the line width too, and curves became bands
thousands of pixels thick. ``flatten_scaled_strokes`` rewrites such groups: the
points are mapped to the page and the group keeps no transform.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
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
    with ExitStack() as stack:
        placed, size = _layout(plots, stack)
        _write(path, suffix, plots, placed, size)
    if not path.exists() or path.stat().st_size == 0:
        raise OSError(f"could not write {path}; check the folder exists and is writable")
    return path


def _write(
    path: Path,
    suffix: str,
    plots: list[list[pg.PlotWidget]],
    placed: list[tuple[pg.PlotWidget, QRectF, QPointF]],
    size: QSize,
) -> None:
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
        if path.exists():
            flatten_scaled_strokes(path)


def export_plot(plot: pg.PlotWidget, path: str | Path) -> Path:
    """One plot to ``path`` (PNG or SVG), as ``export_plots`` draws it."""
    return export_plots([[plot]], path)


@contextmanager
def plot_rect(plot: pg.PlotWidget) -> Iterator[QRectF]:
    """The part of ``plot``'s scene that is drawn: its ``PlotItem``.

    A plot never laid out (its tab never shown), or too small to read, is laid
    out at ``MIN_SIZE`` for the export and put back as it was afterwards, so the
    window's plot is left as the user sees it.
    """
    item = plot.getPlotItem()
    rect = item.sceneBoundingRect()
    if rect.width() >= MIN_SIZE.width() / 2 and rect.height() >= MIN_SIZE.height() / 2:
        yield rect
        return
    before = item.geometry()
    try:
        item.setGeometry(QRectF(0, 0, MIN_SIZE.width(), MIN_SIZE.height()))
        # Twice: the first pass may rewrap the legend, the second places the data under it.
        item.layout.activate()
        item.layout.activate()
        yield item.sceneBoundingRect()
    finally:
        item.setGeometry(before)
        item.layout.activate()


def _layout(
    rows: list[list[pg.PlotWidget]], stack: ExitStack
) -> tuple[list[tuple[pg.PlotWidget, QRectF, QPointF]], QSize]:
    placed = []
    y, width = 0.0, 0.0
    for row in rows:
        x, height = 0.0, 0.0
        for plot in row:
            source = stack.enter_context(plot_rect(plot))
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


_SVG = "http://www.w3.org/2000/svg"
_MATRIX = re.compile(r"matrix\(([^)]*)\)")
# What QSvgGenerator writes in path data and point lists: absolute commands and numbers.
_TOKEN = re.compile(r"[MLCZ]|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_NOT_ABSOLUTE = re.compile(r"[^MLCZ\d\s,.eE+-]")
_LINES = {f"{{{_SVG}}}path", f"{{{_SVG}}}polyline", f"{{{_SVG}}}polygon"}


def flatten_scaled_strokes(path: Path) -> None:
    """Map the points of scaled stroke-only groups to the page (see the module's note).

    A group is rewritten only when it holds nothing but paths and polylines in
    absolute coordinates (what ``QSvgGenerator`` writes for a curve); text, rotated
    labels and anything else keep their transform.
    """
    ET.register_namespace("", _SVG)
    ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")
    try:
        tree = ET.parse(path)
    except ET.ParseError:
        return  # not what QSvgGenerator writes: nothing to flatten
    changed = False
    for group in tree.getroot().iter(f"{{{_SVG}}}g"):
        found = _MATRIX.fullmatch(group.get("transform", ""))
        if found is None or not len(group) or any(c.tag not in _LINES for c in group):
            continue
        matrix = tuple(float(v) for v in found.group(1).split(","))
        if matrix[:4] == (1.0, 0.0, 0.0, 1.0):
            continue  # a translation scales no stroke
        rewritten = []
        for child in group:
            key = "d" if child.tag.endswith("}path") else "points"
            text = child.get(key, "")
            if key == "d" and _NOT_ABSOLUTE.search(text):
                break  # relative or other commands: leave this group as Qt wrote it
            rewritten.append((child, key, _map_points(text, matrix)))
        else:
            for child, key, text in rewritten:
                child.set(key, text)
            del group.attrib["transform"]
            changed = True
    if changed:
        tree.write(path, encoding="UTF-8", xml_declaration=True)


def _map_points(text: str, matrix: tuple[float, ...]) -> str:
    """``text`` (path data or a points list) with every x,y pair mapped by the SVG ``matrix``."""
    a, b, c, d, e, f = matrix
    out: list[str] = []
    pending: list[float] = []
    for token in _TOKEN.findall(text):
        if token.isalpha():
            out.append(token)
            continue
        pending.append(float(token))
        if len(pending) == 2:
            x, y = pending
            out.append(f"{a * x + c * y + e:.7g},{b * x + d * y + f:.7g}")
            pending = []
    return " ".join(out)
