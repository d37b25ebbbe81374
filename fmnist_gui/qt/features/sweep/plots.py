"""The protocol's three live views, as pyqtgraph plots of a ``SweepResults``.

Best accuracy so far against trial number; final accuracy against the learning
rate on a log axis (pruned trials hollow, at their last epoch); per-epoch test
accuracy of the seed runs as mean with a ±1 std band. One colour per optimizer
in the sweep's order, the same in all three. They are redrawn whole from the
latest results (a few hundred points at most) when the controller's paced frame
timer finds new ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QSizePolicy, QWidget

from fmnist_gui.qt.widgets.plotting import is_dark, run_color, style_plot
from fmnist_gui.sweep.results import SweepResults
from fmnist_gui.sweep.space import LR
from fmnist_gui.sweep.stats import best_so_far

BAND_ALPHA = 60
FINISHED = ("complete", "pruned", "failed")
# Below this a plot's title and axes no longer fit; the view scrolls instead.
MIN_WIDTH = 175


@dataclass
class _Items:
    """One optimizer's items in the three plots."""

    best: pg.PlotDataItem
    done: pg.PlotDataItem  # complete trials in the lr plot
    cut: pg.PlotDataItem  # pruned ones, hollow, at their last epoch
    lower: pg.PlotCurveItem  # the band's edges
    upper: pg.PlotCurveItem
    mean: pg.PlotDataItem
    low: pg.PlotDataItem  # the seed runs' min and max, dotted
    high: pg.PlotDataItem
    marker: dict[str, Any]
    shown: dict[str, tuple] = field(default_factory=dict)  # item name -> the data it has

    def set(self, name: str, xs: list, ys: list, **style: Any) -> bool:
        """Give item ``name`` this data unless it has it already; True when it changed."""
        if self.shown.get(name) == (xs, ys):
            return False
        self.shown[name] = (xs, ys)
        getattr(self, name).setData(xs, ys, **style)
        return True


class SweepPlots(QWidget):
    """``best_plot``, ``lr_plot`` and ``band_plot`` side by side; ``show_results`` fills them."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.best_plot = self._make_plot(
            "Best so far", "Best test accuracy (%)", "Tuning trial", legend=True
        )
        self.lr_plot = self._make_plot(
            "Accuracy vs lr", "Final test accuracy (%)", "Learning rate (log)", legend=False
        )
        self.lr_plot.getPlotItem().setLogMode(x=True, y=False)
        self.band_plot = self._make_plot(
            "Seeds: mean ± std", "Test accuracy (%)", "Epoch", legend=False
        )
        for plot in (self.best_plot, self.band_plot):
            plot.getAxis("bottom").setTickSpacing(1, 1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for plot in self.plots():
            layout.addWidget(plot, 1)
        self.results: SweepResults | None = None
        self._items: list[_Items] = []
        self._items_for: tuple[str, ...] | None = None  # the optimizers they were made for
        #: Points drawn per plot, by optimizer (tests read them).
        self.drawn: dict[str, dict[str, int]] = {"best": {}, "lr": {}, "band": {}}
        self._empty_ranges(None)

    def plots(self) -> list[pg.PlotWidget]:
        return [self.best_plot, self.lr_plot, self.band_plot]

    def _make_plot(self, title: str, left: str, bottom: str, legend: bool) -> pg.PlotWidget:
        widget = pg.PlotWidget()
        item = widget.getPlotItem()
        item.setTitle(title, size="10pt")
        item.setLabel("left", left)
        item.setLabel("bottom", bottom)
        item.showGrid(x=True, y=True, alpha=0.2)
        item.getViewBox().setDefaultPadding(0.05)
        item.setMenuEnabled(False)
        if legend:
            # In the lower right corner, where a best-so-far curve (rising) seldom goes:
            # a strip legend would wrap into rows on plots this narrow.
            item.addLegend(offset=(-4, -4), labelTextSize="8pt", verSpacing=-6)
        widget.setMinimumSize(MIN_WIDTH, 180)
        widget.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        style_plot(widget, self.palette(), legend_alpha=210)
        return widget

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.type() == event.Type.PaletteChange:
            for plot in self.plots():
                style_plot(plot, self.palette(), legend_alpha=210)
            if self.results is not None:
                self._items_for = None  # colours depend on the palette
                self.show_results(self.results)
        super().changeEvent(event)

    def clear(self) -> None:
        self.results = None
        self._items_for = None
        self._items = []
        for plot in self.plots():
            plot.getPlotItem().clear()
        self.drawn = {"best": {}, "lr": {}, "band": {}}

    def _make_items(self, results: SweepResults) -> None:
        """One set of (empty) items per optimizer; new frames only give them data.

        Building pyqtgraph items costs far more than setting their data: made
        afresh on every frame, they held the GUI thread for a tenth of a second.
        """
        self.clear()
        dark = is_dark(self)
        best, lr, band = (p.getPlotItem() for p in self.plots())
        for index, o in enumerate(results.optimizers):
            color = run_color(index + 1, dark)
            fill = QColor(color)
            fill.setAlpha(BAND_ALPHA)
            marker = {"symbolSize": 6, "symbolBrush": color, "symbolPen": color}
            items = _Items(
                best=best.plot([], [], pen=pg.mkPen(color, width=2), name=o.optimizer),
                done=lr.plot([], [], pen=None, symbol="o", **{**marker, "symbolSize": 8}),
                cut=lr.plot(
                    [],
                    [],
                    pen=None,
                    symbol="o",
                    symbolSize=8,
                    symbolBrush=None,
                    symbolPen=pg.mkPen(color, width=1.5),
                ),
                # Edges in the band's own colour: FillBetweenItem needs drawn curves.
                lower=pg.PlotCurveItem([], [], pen=pg.mkPen(fill)),
                upper=pg.PlotCurveItem([], [], pen=pg.mkPen(fill)),
                mean=band.plot([], [], pen=pg.mkPen(color, width=2), symbol="o", **marker),
                low=band.plot([], [], pen=pg.mkPen(color, width=1, style=Qt.PenStyle.DotLine)),
                high=band.plot([], [], pen=pg.mkPen(color, width=1, style=Qt.PenStyle.DotLine)),
                marker=marker,
            )
            band.addItem(items.lower)
            band.addItem(items.upper)
            band.addItem(pg.FillBetweenItem(items.lower, items.upper, brush=pg.mkBrush(fill)))
            self._items.append(items)
        self._items_for = tuple(results.spec.optimizers)

    def show_results(self, results: SweepResults) -> None:
        """Draw ``results`` (the whole sweep so far) in the three plots."""
        if self._items_for != tuple(results.spec.optimizers):
            self._make_items(results)
        self.results = results
        changed = False
        for items, o in zip(self._items, results.optimizers, strict=True):
            # Over finished trials only (a running one has no result yet); NaN until the
            # first complete one, left out (an all-NaN curve has no bounds).
            finished = [t for t in o.counted if t.state in FINISHED]
            values = best_so_far([t.value if t.state == "complete" else None for t in finished])
            points = [(x, 100 * y) for x, y in enumerate(values, start=1) if not math.isnan(y)]
            changed |= items.set(
                "best",
                [x for x, _ in points],
                [y for _, y in points],
                symbol="o" if points else None,
                **items.marker,
            )
            self.drawn["best"][o.optimizer] = len(points)
            done = [t for t in o.counted if t.state == "complete" and t.lr and t.value is not None]
            cut = [
                t
                for t in o.counted
                if t.outcome == "pruned" and t.lr and t.last_accuracy is not None
            ]
            changed |= items.set(
                "done", [t.lr for t in done], [100 * (t.value or 0.0) for t in done]
            )
            changed |= items.set(
                "cut", [t.lr for t in cut], [100 * (t.last_accuracy or 0.0) for t in cut]
            )
            self.drawn["lr"][o.optimizer] = len(done) + len(cut)
            stats = o.stats
            if stats is None:
                for name in ("lower", "upper", "mean", "low", "high"):
                    changed |= items.set(name, [], [])
                self.drawn["band"][o.optimizer] = 0
                continue
            epochs = list(range(1, len(stats.curve_mean) + 1))
            pairs = list(zip(stats.curve_mean, stats.curve_std, strict=True))
            changed |= items.set("lower", epochs, [max(0.0, 100 * (m - d)) for m, d in pairs])
            changed |= items.set("upper", epochs, [min(100.0, 100 * (m + d)) for m, d in pairs])
            changed |= items.set("mean", epochs, [100 * m for m in stats.curve_mean])
            changed |= items.set("low", epochs, [100 * v for v in stats.curve_min])
            changed |= items.set("high", epochs, [100 * v for v in stats.curve_max])
            self.drawn["band"][o.optimizer] = len(epochs)
        if not changed:
            return  # the same picture: no refit, no repaint
        lr = self.lr_plot.getPlotItem()
        for plot in self.plots():
            plot.getPlotItem().enableAutoRange()
        # lr over the whole searched range, whole decades: a few points would otherwise
        # auto-range to a fraction of a decade, where the log axis has no labels to show.
        lows: list[float] = []
        highs: list[float] = []
        for space in results.spec.spaces:
            dim = space.dimension(LR)
            if dim.low is not None and dim.high is not None:
                lows.append(dim.low)
                highs.append(dim.high)
        if lows:
            first = math.floor(math.log10(min(lows)))
            last = math.ceil(math.log10(max(highs)))
            lr.setXRange(first, max(last, first + 1), padding=0.05)
        self._empty_ranges(results)

    def _empty_ranges(self, results: SweepResults | None) -> None:
        """Axes that say what is coming while a plot has no point yet."""
        trials = results.spec.trials if results is not None else 10
        epochs = results.spec.epochs if results is not None else 2
        for plot, key, x_range in (
            (self.best_plot, "best", (1, max(2, trials))),
            (self.lr_plot, "lr", (-5, 0)),  # log10 of lr's default range
            (self.band_plot, "band", (1, max(2, epochs))),
        ):
            if not any(self.drawn[key].values()):
                plot.getPlotItem().setRange(xRange=x_range, yRange=(0, 100), padding=0.05)
