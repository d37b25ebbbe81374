"""The run list as widgets: overlaid plots of the shown runs, the table, and exports.

``RunPlots`` draws every shown run of a ``fmnist_gui.analysis.runs.RunList`` on shared
axes (one colour per run, a legend by name); ``RunsView`` is the table where
runs are shown/hidden, renamed and removed, with the export buttons (metrics
CSV, plots PNG/SVG). Both follow the list through its listeners and redraw on
a short single-shot timer, so a burst of updates costs one repaint.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import shiboken6
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from fmnist_gui.analysis.runs import Run, RunError, RunList
from fmnist_gui.qt.features.runs.export import export_plots
from fmnist_gui.qt.features.training.plots import StripLegend, debiased_ema

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
        layout.addWidget(self.loss_plot, 3)
        layout.addWidget(self.accuracy_plot, 2)
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
        self._style(widget)
        return widget

    def _style(self, widget: pg.PlotWidget) -> None:
        palette = self.palette()
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
            item.legend.setBrush(pg.mkBrush(background))
            item.legend.setLabelTextColor(foreground)

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.type() == event.Type.PaletteChange:
            for plot in (self.loss_plot, self.accuracy_plot):
                self._style(plot)
            self._drawn.clear()  # colours depend on the palette
            self.redraw()
        super().changeEvent(event)

    def _on_runs_changed(self, kind: str, run: Run) -> None:
        if kind != "changed":
            # Runs came or went (a race, Reset, an opened checkpoint's list): the axes
            # refit to what is now shown, whatever zoom the old runs had.
            self._refit = True
        schedule_refresh(self, self._timer)

    def curve_names(self) -> list[str]:
        """Legend entries of the loss plot, in order (tests read them)."""
        legend = self.loss_plot.getPlotItem().legend
        return [label.text for _, label in legend.items]

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


class RunsView(QWidget):
    """The session's runs: show/hide, rename (edit the name), remove, export."""

    COLUMNS = (
        "Show",
        "Name",
        "Source",
        "Optimizer",
        "Settings",
        "lr",
        "Epochs",
        "Test accuracy",
        "Test loss",
        "Status",
    )
    message = Signal(str)  # what an export did, for the status bar or log
    # A run's settings (a TrainConfig.to_dict()) for the training form's new model.
    use_settings_requested = Signal(object)

    def __init__(
        self,
        runs: RunList,
        plots: Callable[[], list[list[pg.PlotWidget]]] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.runs = runs
        self.plots = plots or (lambda: [])
        self._filling = False
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked
            | QAbstractItemView.EditTrigger.EditKeyPressed
            | QAbstractItemView.EditTrigger.SelectedClicked
        )
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # Names stay whole; long settings lists give way (elided, full text in the tooltip).
        header.setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.table.setWordWrap(False)
        self.table.itemChanged.connect(self._on_item_changed)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove the selected runs from the list and the plots")
        self.remove_button.clicked.connect(self.remove_selected)
        self.csv_button = QPushButton("Export metrics (CSV)\u2026")
        self.csv_button.setToolTip("One row per epoch per shown run, with its settings")
        self.csv_button.clicked.connect(self.export_csv_dialog)
        self.plot_button = QPushButton("Export plots (PNG/SVG)\u2026")
        self.plot_button.clicked.connect(self.export_plots_dialog)
        self.hint = QLabel(
            "Double-click a name to rename it; untick Show to hide a run "
            "from the plots and the CSV."
        )
        self.hint.setWordWrap(True)
        buttons = QHBoxLayout()
        for button in (self.remove_button, self.csv_button, self.plot_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        self.details = QTextBrowser()
        self.details.setPlaceholderText("Select a run to see all its settings and every epoch.")
        self.use_button = QPushButton("Use these settings")
        self.use_button.setToolTip(
            "Fill the Training tab's form with this run's settings, for a new model"
        )
        self.use_button.clicked.connect(self._use_settings)
        details_box = QWidget()
        details_layout = QVBoxLayout(details_box)
        details_layout.setContentsMargins(0, 0, 0, 0)
        details_layout.addWidget(self.details, 1)
        use_row = QHBoxLayout()
        use_row.addStretch(1)
        use_row.addWidget(self.use_button)
        details_layout.addLayout(use_row)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(details_box)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.hint)
        layout.addWidget(split, 1)
        layout.addLayout(buttons)
        self.table.itemSelectionChanged.connect(self.show_details)
        self._timer = QTimer(self, singleShot=True, interval=50)
        self._timer.timeout.connect(self.refill)
        runs.subscribe(self._on_runs_changed)
        self.refill()

    def _on_runs_changed(self, kind: str, run: Run) -> None:
        schedule_refresh(self, self._timer)

    def row_of(self, run_id: int) -> int:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 1).data(Qt.ItemDataRole.UserRole) == run_id:
                return row
        raise RunError(f"run {run_id} is not in the table")

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self.refill()

    def refill(self) -> None:
        if not self.isVisible():
            return  # showEvent refills
        self._filling = True
        try:
            self.table.setRowCount(len(self.runs))
            for row, run in enumerate(self.runs):
                last = run.epochs[-1] if run.epochs else None
                params = run.config.get("optimizer_params") or {}
                settings = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
                cells = [
                    "",
                    run.name,
                    run.source,
                    str(run.config.get("optimizer", "")),
                    settings or "defaults",
                    f"{run.config.get('lr', 0):g}",
                    f"{len(run.epochs)}/{run.config.get('epochs', '?')}",
                    f"{last['test_accuracy']:.1%}" if last else "\u2013",
                    f"{last['test_loss']:.4f}" if last else "\u2013",
                    run.status,
                ]
                for column, text in enumerate(cells):
                    item = table_item(self.table, row, column, text)
                    if column == 4:
                        item.setToolTip(text)
                    flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
                    if column == 0:
                        flags |= Qt.ItemFlag.ItemIsUserCheckable
                        item.setCheckState(
                            Qt.CheckState.Checked if run.visible else Qt.CheckState.Unchecked
                        )
                        item.setData(
                            Qt.ItemDataRole.DecorationRole, run_color(run.id, is_dark(self))
                        )
                    if column == 1:
                        flags |= Qt.ItemFlag.ItemIsEditable
                        item.setData(Qt.ItemDataRole.UserRole, run.id)
                    item.setFlags(flags)
            self.remove_button.setEnabled(len(self.runs) > 0)
        finally:
            self._filling = False
        self.show_details()

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling:
            return
        run_id = self.table.item(item.row(), 1).data(Qt.ItemDataRole.UserRole)
        try:
            if item.column() == 0:
                self.runs.set_visible(run_id, item.checkState() == Qt.CheckState.Checked)
            elif item.column() == 1:
                self.runs.rename(run_id, item.text())
        except RunError as exc:
            self.message.emit(str(exc))
            self._timer.start()  # put the old name back

    def show_details(self) -> None:
        """All settings and the per-epoch metrics of the selected run."""
        ids = [i for i in self.selected_ids() if any(r.id == i for r in self.runs)]
        self.use_button.setEnabled(len(ids) == 1)
        if len(ids) != 1:
            self.details.clear()
            return
        run = self.runs.get(ids[0])
        config = run.config
        settings = "".join(
            f"<tr><td>{html.escape(str(key))}</td><td>{html.escape(_describe(value))}</td></tr>"
            for key, value in config.items()
        )
        header = "".join(
            f"<th>{name}</th>"
            for name in ("Epoch", "Train loss", "Test loss", "Test accuracy", "Seconds")
        )
        rows = "".join(
            f"<tr><td>{int(e['epoch'])}</td><td>{e['train_loss']:.4f}</td>"
            f"<td>{e['test_loss']:.4f}</td><td>{e['test_accuracy']:.2%}</td>"
            f"<td>{e['train_seconds'] + e['test_seconds']:.1f}</td></tr>"
            for e in run.epochs
        )
        self.details.setHtml(
            f"<b>{html.escape(run.name)}</b> ({run.source}, {html.escape(run.status)}, "
            f"{len(run.epochs)}/{config.get('epochs', '?')} epochs)"
            f"<table cellspacing=0 cellpadding=2>{settings}</table>"
            + (
                f"<table cellspacing=0 cellpadding=2 border=1><tr>{header}</tr>{rows}</table>"
                if rows
                else "<p>No epoch finished yet.</p>"
            )
        )

    def _use_settings(self) -> None:
        ids = self.selected_ids()
        if len(ids) == 1:
            run = self.runs.get(ids[0])
            self.use_settings_requested.emit(dict(run.config))
            self.message.emit(f"The training form now holds the settings of {run.name}.")

    def selected_ids(self) -> list[int]:
        rows = sorted({index.row() for index in self.table.selectedIndexes()})
        return [self.table.item(r, 1).data(Qt.ItemDataRole.UserRole) for r in rows]

    def remove_selected(self) -> None:
        for run_id in self.selected_ids():
            self.runs.remove(run_id)

    # ----- exports (the dialogs are looked up here, so tests can patch them) -----------------
    def export_csv_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export metrics", "runs.csv", "CSV files (*.csv)"
        )
        if not path:
            return
        try:
            rows = self.runs.export_csv(Path(path))
        except OSError as exc:
            QMessageBox.warning(
                self, "Export failed", f"Could not write {path}: {exc.strerror or exc}"
            )
            return
        self.message.emit(f"Wrote {rows} rows to {path}")

    def export_plots_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export plots", "runs.png", "PNG image (*.png);;SVG drawing (*.svg)"
        )
        if not path:
            return
        try:
            written = self.export_plots(Path(path))
        except (OSError, ValueError) as exc:
            QMessageBox.warning(self, "Export failed", str(exc))
            return
        self.message.emit("Saved the plots to " + ", ".join(str(p) for p in written))

    def export_plots(self, path: Path) -> list[Path]:
        """The plots (rows of them, as ``plots()`` gives) composed into the one file ``path``.

        A name without .png or .svg gets .png.
        """
        rows = self.plots()
        if not any(rows):
            raise ValueError("there is no plot to export yet")
        if path.suffix.lower() not in (".png", ".svg"):
            path = path.with_suffix(".png")
        return [export_plots(rows, path)]


def table_item(table: QTableWidget, row: int, column: int, text: str) -> QTableWidgetItem:
    """The item at (row, column) with ``text``: updated in place, created only when missing.

    Refills never replace items, so Qt never deletes one that Python (or an
    open editor) may still be holding.
    """
    item = table.item(row, column)
    if item is None:
        item = QTableWidgetItem(text)
        table.setItem(row, column, item)
    elif item.text() != text:
        item.setText(text)
    return item


def schedule_refresh(view: QWidget, timer: QTimer) -> None:
    """Start a view's coalescing timer; a view already deleted by Qt stops listening."""
    if not shiboken6.isValid(timer):
        view.runs.unsubscribe(view._on_runs_changed)
    elif not timer.isActive():
        timer.start()


def _describe(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items()) or "defaults"
    if value is None:
        return "random"
    return _short(value)


def _short(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(f"{v:g}" for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
