"""The Sweep tab's widgets: the form and its buttons, the live plots, the protocol table.

The form sits in a scroll area on the left so the tab fits a 1024x640 window;
the plots and the table share the right side in a splitter. The view only
shows things: ``SweepController`` connects the buttons and feeds it results.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from fmnist_gui.qt.features.sweep.form import SweepForm
from fmnist_gui.qt.features.sweep.plots import SweepPlots
from fmnist_gui.qt.widgets.tables import table_item
from fmnist_gui.sweep.report import describe_reached, describe_settings
from fmnist_gui.sweep.results import SweepResults

ERROR_STYLE = "color: #c9302c;"
FORM_WIDTH = 250


def _pct(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.2%}"


class SweepView(QWidget):
    """The tab: ``form``, the Start/Stop/Resume buttons, ``plots``, ``table`` and the exports."""

    COLUMNS = (
        "Optimizer",
        "Trials",
        "Pruned",
        "Failed",
        "Best",
        "Best setting",
        "Seeds",
        "Mean",
        "Std",
        "Min",
        "Max",
        "Epochs to target",
        "Seconds to target",
    )

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.form = SweepForm()
        self.start_button = QPushButton("&Start")
        self.start_button.setObjectName("sweep_start")
        self.start_button.setToolTip(
            "Make the sweep (or continue the one of that name, if its settings are the same) "
            "and work on it"
        )
        self.stop_button = QPushButton("St&op")
        self.stop_button.setObjectName("sweep_stop")
        self.stop_button.setToolTip(
            "Stop after the current batch; the interrupted trials run again on Resume"
        )
        self.resume_button = QPushButton("Resu&me")
        self.resume_button.setObjectName("sweep_resume")
        self.resume_button.setToolTip("Continue the sweep chosen in the Existing list")
        buttons = QHBoxLayout()
        for button in (self.start_button, self.stop_button, self.resume_button):
            buttons.addWidget(button)
        self.message_label = QLabel()
        self.message_label.setObjectName("sweep_message")
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message_label.hide()

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.form, 1)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self.message_label)
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidget(left)
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll_area.setMinimumWidth(FORM_WIDTH)
        left.setMinimumHeight(left.sizeHint().height())

        self.plots = SweepPlots()
        # On a small screen the three plots scroll sideways rather than squeeze their axes.
        self.plots_area = QScrollArea()
        self.plots_area.setWidget(self.plots)
        self.plots_area.setWidgetResizable(True)
        self.plots_area.setFrameShape(QFrame.Shape.NoFrame)
        self.plots_area.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.plots_area.setMinimumSize(200, 200)
        self.form_toggle = QToolButton()
        self.form_toggle.setObjectName("sweep_form_toggle")
        self.form_toggle.setCheckable(True)
        self.form_toggle.setChecked(True)
        self.form_toggle.setToolTip("Show or hide the sweep's settings, to give the plots room")
        self.form_toggle.toggled.connect(self._show_form)
        self._show_form(True)
        self.status_label = QLabel("No sweep yet: tick optimizers, then Start.")
        self.status_label.setObjectName("sweep_status")
        self.status_label.setWordWrap(True)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setObjectName("sweep_results")
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setMinimumHeight(110)  # a header and three optimizers
        self.use_button = QPushButton("Use these settin&gs")
        self.use_button.setObjectName("sweep_use")
        self.use_button.setToolTip(
            "Copy the selected optimizer's best setting into the Training form"
        )
        self.csv_button = QPushButton("Export &CSV…")
        self.csv_button.setObjectName("sweep_csv")
        self.csv_button.setToolTip("Every trial of the sweep, one row each")
        self.plots_button = QPushButton("Sa&ve plots…")
        self.plots_button.setObjectName("sweep_plots_export")
        self.plots_button.setToolTip("The three plots as one PNG or SVG picture")
        actions = QHBoxLayout()
        actions.addWidget(self.use_button)
        actions.addStretch(1)
        actions.addWidget(self.csv_button)
        actions.addWidget(self.plots_button)
        bottom = QWidget()
        bottom_layout = QVBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        status_row = QHBoxLayout()
        status_row.addWidget(self.form_toggle)
        status_row.addWidget(self.status_label, 1)
        bottom_layout.addLayout(status_row)
        bottom_layout.addWidget(self.table, 1)
        bottom_layout.addLayout(actions)
        right = QSplitter(Qt.Orientation.Vertical)
        right.setChildrenCollapsible(False)
        right.addWidget(self.plots_area)
        right.addWidget(bottom)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 2)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(self.scroll_area)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        # The form whole when there is room (it scrolls sideways when dragged narrower).
        splitter.setSizes([max(FORM_WIDTH, left.sizeHint().width() + 20), 900])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)
        self.table.itemSelectionChanged.connect(self._update_use_button)
        self.set_running(False)

    # ----- state ---------------------------------------------------------------------
    def _show_form(self, shown: bool) -> None:
        self.scroll_area.setVisible(shown)
        self.form_toggle.setText("◂ Settings" if shown else "Settings ▸")

    def set_running(self, running: bool) -> None:
        """Buttons and form for a sweep running (or not); Stop only while it runs."""
        self.form.setEnabled(not running)
        self.start_button.setEnabled(not running)
        self.resume_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def show_message(self, text: str, *, error: bool = False) -> None:
        """A line under the buttons (red for a problem); empty text hides it."""
        self.message_label.setStyleSheet(ERROR_STYLE if error else "")
        self.message_label.setText(text)
        self.message_label.setVisible(bool(text))

    def message(self) -> str:
        return self.message_label.text() if self.message_label.isVisible() else ""

    # ----- results --------------------------------------------------------------------
    def show_results(self, results: SweepResults) -> None:
        """The protocol table, one row per optimizer; the plots are drawn by the caller's timer."""
        spec = results.spec
        target = f"{spec.target_accuracy:.0%}"
        self.table.setHorizontalHeaderLabels(
            [*self.COLUMNS[:11], f"Epochs to {target}", f"Seconds to {target}"]
        )
        selected = self.selected_optimizer()
        self.table.setRowCount(len(results.optimizers))
        for row, o in enumerate(results.optimizers):
            s = o.stats
            finished = sum(t.state in ("complete", "pruned", "failed") for t in o.counted)
            best = o.best
            cells = (
                o.optimizer,
                f"{finished}/{spec.trials}",
                str(o.count("pruned") + o.count("diverged")),
                str(o.count("failed")),
                _pct(best.value if best else None),
                describe_settings(best.lr, best.params) if best else "–",
                f"{s.runs if s else 0}/{spec.seeds}",
                _pct(s.mean if s else None),
                f"{s.std * 100:.2f}" if s else "–",
                _pct(s.min if s else None),
                _pct(s.max if s else None),
                describe_reached(s, "epochs", missing="–"),
                describe_reached(s, "seconds", missing="–"),
            )
            for column, text in enumerate(cells):
                item = table_item(self.table, row, column, text)
                item.setToolTip(text if column == 5 else "")
                if column >= 1 and column != 5:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
            table_item(self.table, row, 0, o.optimizer).setData(
                Qt.ItemDataRole.UserRole, o.optimizer
            )
        if selected is not None:
            self.select_optimizer(selected)
        elif self.table.rowCount():
            self.table.selectRow(0)
        self._update_use_button()

    def selected_optimizer(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def select_optimizer(self, name: str) -> None:
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == name:
                self.table.selectRow(row)
                return

    def _update_use_button(self) -> None:
        row = self.table.currentRow()
        best = self.table.item(row, 4) if row >= 0 else None
        self.use_button.setEnabled(best is not None and best.text() != "–")

    def focus_chain(self) -> list[QWidget]:
        return [
            *self.form.focus_chain(),
            self.start_button,
            self.stop_button,
            self.resume_button,
            self.table,
            self.use_button,
            self.csv_button,
            self.plots_button,
        ]
