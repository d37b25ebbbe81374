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

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from fmnist_gui.analysis.runs import Run, RunError, RunList
from fmnist_gui.qt.widgets.export import export_plots
from fmnist_gui.qt.widgets.plotting import is_dark, run_color
from fmnist_gui.qt.widgets.tables import schedule_refresh, table_item


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
    SETTINGS = COLUMNS.index("Settings")
    SETTINGS_WIDTH = 170  # the Settings column's first width, in pixels
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
        # Names stay whole; long settings lists are elided (the whole list in the
        # tooltip) in a column of their own width, which the user may drag. In a
        # narrow window the table scrolls sideways rather than squeeze any header.
        header.setSectionResizeMode(self.SETTINGS, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(
            self.SETTINGS, max(self.SETTINGS_WIDTH, header.sectionSizeHint(self.SETTINGS))
        )
        header.setStretchLastSection(True)
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
        schedule_refresh(self._timer, self.runs, self._on_runs_changed)

    def _run_id_at(self, row: int) -> int | None:
        """The id of the run in ``row`` (kept on its name cell), if the row is filled."""
        item = self.table.item(row, 1)
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def row_of(self, run_id: int) -> int:
        for row in range(self.table.rowCount()):
            if self._run_id_at(row) == run_id:
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
                    if column == self.SETTINGS:
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
        run_id = self._run_id_at(item.row())
        if run_id is None:
            return
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
        return [run_id for r in rows if (run_id := self._run_id_at(r)) is not None]

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
