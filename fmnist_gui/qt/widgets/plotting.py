"""Plot pieces every tab shares: smoothing, the strip legend, run colours, the run plots.

``RunPlots`` draws every shown run of a ``fmnist_gui.analysis.runs.RunList`` on shared
axes (one colour per run, a legend by name) and follows the list through its
listeners, redrawing on a short single-shot timer so a burst of updates costs
one repaint. The Training, Runs, Compare and Sweep tabs all build on these.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QFontMetricsF, QPalette
from PySide6.QtWidgets import QHBoxLayout, QSizePolicy, QWidget

from fmnist_gui.analysis.runs import Run, RunList
from fmnist_gui.qt.widgets.tables import schedule_refresh


def debiased_ema(
    values: Sequence[float] | np.ndarray, weight: float, state: tuple[float, int] = (0.0, 0)
) -> tuple[np.ndarray, tuple[float, int]]:
    """TensorBoard's smoothing: an exponential moving average divided by ``1 - w**n``.

    The debiasing stops the curve from starting near zero. ``state`` is
    ``(last, count)`` from a previous call, so a long curve can be extended a
    few points at a time; the new state is returned with the smoothed values.
    """
    last, count = state
    out = np.empty(len(values), dtype=np.float64)
    w, one_minus_w = float(weight), 1.0 - float(weight)
    for i, v in enumerate(values):
        last = last * w + one_minus_w * v
        count += 1
        debias = 1.0 - w**count if w > 0 else 1.0
        out[i] = last / debias if debias > 0 else v
    return out, (last, count)


class StripLegend(pg.LegendItem):
    """A legend in a row between a plot's title and its data, so it never covers a curve.

    It takes the place of the (hidden) top axis in the ``PlotItem``'s layout and
    wraps onto more rows when the plot is too narrow for one. When even one
    entry a row is too wide, the names are shortened with "…" (``names()`` keeps
    them whole), so the legend never widens the plot past its window.
    """

    #: The narrowest the legend lets its plot's layout make it; _reflow then wraps.
    MINIMUM_WIDTH = 80.0

    def __init__(self, item: pg.PlotItem, text_color=None) -> None:
        super().__init__(offset=None, labelTextColor=text_color, colCount=1, frame=False)
        self._plot_item = item
        self._names: dict[pg.LabelItem, str] = {}  # each label's whole name
        self.layout.setHorizontalSpacing(12)
        item.layout.removeItem(item.getAxis("top"))
        item.layout.addItem(self, 1, 1)
        item.layout.setAlignment(self, Qt.AlignmentFlag.AlignCenter)
        item.legend = self  # PlotItem.plot(name=...) adds its entries here
        item.geometryChanged.connect(self._reflow)

    def addItem(self, item, name) -> None:  # noqa: N802 - pyqtgraph's name
        super().addItem(item, name)
        self._names[self.items[-1][1]] = name
        self._reflow()

    def removeItem(self, item) -> None:  # noqa: N802 - pyqtgraph's name
        super().removeItem(item)
        labels = {label for _, label in self.items}
        self._names = {k: v for k, v in self._names.items() if k in labels}
        self._reflow()

    def names(self) -> list[str]:
        """The entries' names, whole, in order (shown shortened when the plot is narrow)."""
        return [self._names.get(label, label.text) for _, label in self.items]

    def _reflow(self) -> None:
        # As many entries per row as the plot's width allows, at least one; names
        # shortened when one entry a row is still too wide.
        available = self._plot_item.width() - 60
        count = len(self.items)
        for columns in range(max(count, 1), 0, -1):
            if columns != self.columnCount:
                self.setColumnCount(columns)
            whole_width = self._size(whole=True)[0]
            if whole_width <= available or columns == 1:
                break
        room = None
        if self.items and whole_width > available:  # one entry a row, and still too wide
            sample = self.items[0][0].effectiveSizeHint(Qt.SizeHint.PreferredSize).width()
            room = max(available - sample - 2 * self.layout.horizontalSpacing(), 40.0)
        for _, label in self.items:
            name = self._names.get(label, label.text)
            text = name if room is None else self._shortened(label, name, room)
            if text != label.text:
                label.setText(text)
                label.setToolTip(name if text != name else "")
        self.updateSize()

    @staticmethod
    def _metrics(label: pg.LabelItem) -> tuple[QFontMetricsF, float]:
        # As LabelItem measures itself: its font, and its document's margin each side.
        return QFontMetricsF(label.item.font()), 2 * label.item.document().documentMargin()

    def _text_width(self, label: pg.LabelItem, text: str) -> float:
        metrics, margins = self._metrics(label)
        return metrics.horizontalAdvance(text) + margins

    def _shortened(self, label: pg.LabelItem, name: str, room: float) -> str:
        metrics, margins = self._metrics(label)
        return metrics.elidedText(name, Qt.TextElideMode.ElideRight, room - margins)

    def _size(self, *, whole: bool) -> tuple[float, float]:
        # From the entries' preferred sizes (and whole names), not their current
        # sizes: a label may be stretched to its column, and a size read back from
        # the layout that this size sets would grow with every pass (it reached
        # millions of pixels in Compare).
        width = height = 0.0
        preferred = Qt.SizeHint.PreferredSize
        for row in range(self.layout.rowCount()):
            row_width = row_height = 0.0
            for col in range(self.layout.columnCount()):
                entry = self.layout.itemAt(row, col)
                if entry is None:
                    continue
                hint = entry.effectiveSizeHint(preferred)
                name = self._names.get(entry) if whole else None
                entry_width = hint.width() if name is None else self._text_width(entry, name)
                row_width += entry_width + self.layout.horizontalSpacing()
                row_height = max(row_height, hint.height())
            width, height = max(width, row_width), height + row_height
        return width, height

    def updateSize(self) -> None:  # noqa: N802 - pyqtgraph's name
        # A size the parent layout honours (pyqtgraph's sets a geometry, which a
        # layout would overwrite), from what the labels show now. Its minimum width
        # is small: a legend may never keep its plot wider than the window, or the
        # plot's width, which _reflow reads, would never shrink to make it wrap.
        width, height = self._size(whole=False)
        self.setMinimumSize(min(width, self.MINIMUM_WIDTH), height)
        self.setMaximumSize(width, height)
        self.resize(width, height)


# Distinct hues (Tableau 10), in a darker set for light backgrounds and a
# brighter one for dark backgrounds, so every curve keeps its contrast.
LIGHT_COLORS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
)
DARK_COLORS = (
    "#6cb6ff",
    "#ff6b6b",
    "#63d471",
    "#c49bff",
    "#ffb454",
    "#d8a47f",
    "#ff8fd8",
    "#4fe0f0",
    "#c8c8c8",
    "#e4e45a",
)
SMOOTHING = 0.9


def is_dark(widget: QWidget) -> bool:
    return widget.palette().color(QPalette.ColorRole.Base).lightness() < 128


def run_color(run_id: int, dark: bool) -> QColor:
    """The colour of run ``run_id``: stable for the run's life, distinct from its neighbours."""
    colors = DARK_COLORS if dark else LIGHT_COLORS
    return QColor(colors[(run_id - 1) % len(colors)])


def style_plot(widget: pg.PlotWidget, palette: QPalette, *, legend_alpha: int = 255) -> None:
    """Colour a plot's background, title, axes and legend from ``palette`` (light or dark).

    ``legend_alpha`` below 255 lets the grid show through the legend's box.
    """
    background = palette.color(QPalette.ColorRole.Base)
    foreground = palette.color(QPalette.ColorRole.Text)
    widget.setBackground(background)
    item = widget.getPlotItem()
    item.titleLabel.setAttr("color", foreground)
    item.titleLabel.setText(item.titleLabel.text)
    for name in ("left", "bottom"):
        axis = item.getAxis(name)
        axis.setPen(foreground)
        axis.setTextPen(foreground)
        axis.label.setDefaultTextColor(foreground)
    if item.legend is not None:
        veil = QColor(background)
        veil.setAlpha(legend_alpha)
        item.legend.setBrush(pg.mkBrush(veil))
        item.legend.setLabelTextColor(foreground)


class RunPlots(QWidget):
    """The shown runs overlaid: smoothed training loss and test accuracy, both per epoch.

    Runs of different batch sizes take different numbers of steps per epoch, so
    the loss is drawn against epochs (step / steps per epoch): every run spans
    the same axis, whatever its batch size.
    """

    def __init__(self, runs: RunList, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runs = runs
        self._curves: dict[int, tuple[pg.PlotDataItem, pg.PlotDataItem]] = {}
        self._drawn: dict[int, tuple[int, int, str, bool]] = {}  # what each curve shows
        # run id -> (losses smoothed so far, EMA state, smoothed values): each new
        # frame smooths only the losses that arrived since the last one.
        self._smoothed: dict[int, tuple[int, tuple[float, int], np.ndarray]] = {}
        self.loss_plot = self._make_plot("Training loss", "Loss (smoothed)", "Epoch", legend=True)
        # One legend serves both plots (same colours): a second would repeat it.
        self.accuracy_plot = self._make_plot("Test accuracy", "Accuracy (%)", "Epoch", legend=False)
        self.accuracy_plot.getAxis("bottom").setTickSpacing(1, 1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        # Equal halves: in a narrow tab a smaller accuracy plot would clip its title.
        layout.addWidget(self.loss_plot, 1)
        layout.addWidget(self.accuracy_plot, 1)
        self._refit = False
        self._timer = QTimer(self, singleShot=True, interval=30)
        self._timer.timeout.connect(self.redraw)
        runs.subscribe(self._on_runs_changed)
        self.redraw()

    def _make_plot(self, title: str, left: str, bottom: str, legend: bool) -> pg.PlotWidget:
        widget = pg.PlotWidget()
        item = widget.getPlotItem()
        item.setTitle(title, size="11pt")
        item.setLabel("left", left)
        item.setLabel("bottom", bottom)
        item.showGrid(x=True, y=True, alpha=0.2)
        item.getViewBox().setDefaultPadding(0.05)  # the last tick label stays inside
        if legend:
            StripLegend(item)
        item.setClipToView(True)
        item.setDownsampling(auto=True, mode="peak")
        widget.setMinimumHeight(180)
        widget.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        style_plot(widget, self.palette())
        return widget

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.type() == event.Type.PaletteChange:
            for plot in (self.loss_plot, self.accuracy_plot):
                style_plot(plot, self.palette())
            self._drawn.clear()  # colours depend on the palette
            self.redraw()
        super().changeEvent(event)

    def _on_runs_changed(self, kind: str, run: Run) -> None:
        if kind != "changed":
            # Runs came or went (a race, Reset, an opened checkpoint's list): the axes
            # refit to what is now shown, whatever zoom the old runs had.
            self._refit = True
        schedule_refresh(self._timer, self.runs, self._on_runs_changed)

    def curve_names(self) -> list[str]:
        """Legend entries of the loss plot, in order (tests read them)."""
        return self.loss_plot.getPlotItem().legend.names()

    def _remove_curves(self, run_id: int) -> None:
        curves = self._curves.pop(run_id, None)
        if curves is not None:
            # PlotItem.removeItem also takes the entry out of the legend.
            self.loss_plot.getPlotItem().removeItem(curves[0])
            self.accuracy_plot.getPlotItem().removeItem(curves[1])
        self._drawn.pop(run_id, None)

    def _smooth(self, run: Run) -> np.ndarray:
        done, state, values = self._smoothed.get(run.id, (0, (0.0, 0), np.empty(0)))
        if len(run.batch_losses) < done:  # cannot happen today; start over if it does
            done, state, values = 0, (0.0, 0), np.empty(0)
        if len(run.batch_losses) > done:
            new, state = debiased_ema(run.batch_losses[done:], SMOOTHING, state)
            values = np.concatenate([values, new])
            self._smoothed[run.id] = (len(run.batch_losses), state, values)
        return values

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self.redraw()  # changes that came while hidden were not drawn

    def redraw(self, force: bool = False) -> None:
        """Bring the curves up to date with the run list (only changed runs are redrawn).

        Hidden plots wait for their next show, unless ``force`` (e.g. to export them).
        """
        if not (self.isVisible() or force):
            return
        if self._refit:
            self._refit = False
            for plot in (self.loss_plot, self.accuracy_plot):
                plot.getPlotItem().enableAutoRange()
        dark = is_dark(self)
        shown = {run.id: run for run in self.runs.visible()}
        for run_id in list(self._curves):
            if run_id not in shown:
                self._remove_curves(run_id)
        for run_id in set(self._smoothed) - {r.id for r in self.runs}:
            del self._smoothed[run_id]
        for run in shown.values():
            signature = (len(run.batch_losses), len(run.epochs), run.name, dark)
            drawn = self._drawn.get(run.id)
            if drawn == signature:
                continue
            if drawn is None or drawn[2:] != signature[2:]:
                # New, renamed or re-themed: new curves, so the legend follows.
                self._remove_curves(run.id)
                color = run_color(run.id, dark)
                self._curves[run.id] = (
                    self.loss_plot.getPlotItem().plot(pen=pg.mkPen(color, width=2), name=run.name),
                    self.accuracy_plot.getPlotItem().plot(
                        pen=pg.mkPen(color, width=2),
                        symbol="o",
                        symbolSize=7,
                        symbolBrush=color,
                        symbolPen=None,
                        name=run.name,
                    ),
                )
            loss_curve, acc_curve = self._curves[run.id]
            if run.batch_losses:
                smoothed = self._smooth(run)
                steps = np.arange(1, len(smoothed) + 1, dtype=np.float64)
                loss_curve.setData(steps / run.epoch_length(), smoothed)
            else:
                loss_curve.setData([], [])
            acc_curve.setData(
                [e["epoch"] for e in run.epochs], [100 * e["test_accuracy"] for e in run.epochs]
            )
            self._drawn[run.id] = signature
