"""The sweep's settings as widgets: optimizers, what to tune, the budget, the study.

The hyperparameter rows come from the engine's ``space.candidates`` (each
plugin's ``Param`` schema plus ``lr``), so a plugin that adds a parameter needs
nothing here. ``SweepForm.plan()`` returns a checked ``SweepPlan`` or raises
``FormError`` naming the field and the fix; the space and budget checks are the
engine's own (``build_spaces``, ``SweepSpec.validate``), run here before any
thread starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from fmnist_gui.errors import FmnistError
from fmnist_gui.plugins.host import PluginHost
from fmnist_gui.plugins.specs import OptimizerSpec
from fmnist_gui.qt.widgets.spec_chooser import (
    HEADER_ROLE,
    NAME_ROLE,
    SpecFilterModel,
    build_spec_model,
    spec_entries,
)
from fmnist_gui.sweep.pool import default_jobs
from fmnist_gui.sweep.space import LR, Dimension, Range, TuneRequest, build_spaces, candidates
from fmnist_gui.sweep.spec import DEFAULT_OPTIMIZERS, PRUNERS, SweepSpec
from fmnist_gui.sweep.study import check_name

DEFAULT_STUDY = "sweep"
MAX_JOBS = 16
# The columns of the hyperparameter table.
TUNE, NAME, LOW, HIGH, LOG = range(5)


class FormError(FmnistError, ValueError):
    """A setting the sweep cannot take; ``widget`` is where to fix it."""

    def __init__(self, message: str, widget: QWidget | None = None) -> None:
        super().__init__(message)
        self.widget = widget


@dataclass(frozen=True)
class SweepPlan:
    """What Start (a new sweep, or the same one continued) or Resume (an existing one) runs.

    ``storage_url`` None is the default SQLite file in the user data folder.
    For a resume only ``name``, ``storage_url`` and ``jobs`` count: the rest is
    the stored sweep's.
    """

    name: str
    storage_url: str | None
    jobs: int
    resume: bool = False
    optimizers: tuple[str, ...] = ()
    tune: tuple[TuneRequest, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)


def _number(value: float | None) -> str:
    """A bound as typed: an excluded end moved one float inwards shows as that end (0, 1)."""
    if value is None:
        return ""
    if value != 0 and abs(value) < 1e-300:
        value = 0.0
    return f"{value:g}"


class SweepForm(QWidget):
    """Optimizers (checkable, filtered), hyperparameters to tune, budget, study and storage."""

    changed = Signal()  # any setting changed (the view clears an old message)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plugins: PluginHost | None = None
        self._specs: dict[str, OptimizerSpec] = {}
        self._defaults: dict[str, Dimension] = {}  # row name -> the range shown by default
        self._filling = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)

        optimizers = QGroupBox("Optimi&zers")
        box = QVBoxLayout(optimizers)
        self.filter_edit = QLineEdit()
        self.filter_edit.setObjectName("sweep_filter")
        self.filter_edit.setPlaceholderText("Search by name, label or plugin…")
        self.filter_edit.setClearButtonEnabled(True)
        # The optimizer chooser's model, grouped by plugin (built-ins first), with check boxes.
        self.optimizer_model = QStandardItemModel(self)
        self.optimizer_filter = SpecFilterModel(self)
        self.optimizer_filter.setSourceModel(self.optimizer_model)
        self.filter_edit.textChanged.connect(self.optimizer_filter.set_search)
        self.optimizer_list = QListView()
        self.optimizer_list.setObjectName("sweep_optimizers")
        self.optimizer_list.setModel(self.optimizer_filter)
        self.optimizer_list.setMinimumHeight(90)
        self.optimizer_list.setToolTip("Tick the optimizers to compare (Space ticks the current)")
        optimizers.setFocusProxy(self.optimizer_list)
        box.addWidget(self.filter_edit)
        box.addWidget(self.optimizer_list, 1)
        layout.addWidget(optimizers, 2)

        tune = QGroupBox("Hyperparameters to tu&ne")
        tune_box = QVBoxLayout(tune)
        self.tune_table = QTableWidget(0, 5)
        self.tune_table.setObjectName("sweep_tune")
        self.tune_table.setHorizontalHeaderLabels(["Tune", "Name", "Low", "High", "Log"])
        self.tune_table.verticalHeader().hide()
        self.tune_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        header = self.tune_table.horizontalHeader()
        for column in (TUNE, NAME, LOG):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        for column in (LOW, HIGH):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Stretch)
        self.tune_table.setMinimumHeight(110)
        self.tune_table.setToolTip(
            "lr is always tuned on a log scale. Tick others to tune them; empty Low/High "
            "cells (an open side of the schema's range) must be filled in. Untuned "
            "hyperparameters keep their defaults."
        )
        self.tune_table.itemChanged.connect(lambda _item: self._changed())
        tune.setFocusProxy(self.tune_table)
        tune_box.addWidget(self.tune_table)
        layout.addWidget(tune, 3)

        budget = QGroupBox("Budget and study")
        form = QFormLayout(budget)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        defaults = SweepSpec(spaces=())
        self.trials_spin = self._spin("sweep_trials", 1, 1000, defaults.trials)
        self.trials_spin.setToolTip("Tuning trials for each optimizer (the same budget for all)")
        self.epochs_spin = self._spin("sweep_epochs", 1, 100, defaults.epochs)
        self.epochs_spin.setToolTip("Epochs of each trial and of each seed run")
        self.seeds_spin = self._spin("sweep_seeds", 0, 50, defaults.seeds)
        self.seeds_spin.setToolTip("Reruns of each optimizer's best setting with fresh seeds")
        self.jobs_spin = self._spin("sweep_jobs", 1, MAX_JOBS, default_jobs())
        self.jobs_spin.setToolTip("Worker processes on this machine, trials in parallel")
        self.subset_spin = self._spin("sweep_subset", 0, 60000, 0)
        self.subset_spin.setSingleStep(1000)
        self.subset_spin.setSpecialValueText("all")
        self.subset_spin.setSuffix(" images")
        self.subset_spin.setToolTip(
            "Train on the first N training images (the test set is always whole)"
        )
        self.pruner_combo = QComboBox()
        self.pruner_combo.setObjectName("sweep_pruner")
        for name in PRUNERS:
            self.pruner_combo.addItem(
                {"median": "median", "halving": "successive halving", "none": "none"}[name], name
            )
        self.pruner_combo.setToolTip("Stops trials whose per-epoch test accuracy lags behind")
        self.pruner_combo.currentIndexChanged.connect(lambda _i: self._changed())
        self.name_edit = QLineEdit(DEFAULT_STUDY)
        self.name_edit.setObjectName("sweep_name")
        self.name_edit.setToolTip("The sweep's name in its storage; Start again to continue it")
        self.name_edit.textChanged.connect(lambda _t: self._changed())
        self.storage_edit = QLineEdit()
        self.storage_edit.setObjectName("sweep_storage")
        self.storage_edit.setPlaceholderText("default: sweeps.db in the user data folder")
        self.storage_edit.setToolTip(
            "An Optuna storage URL: sqlite:///FILE, or postgresql://USER:PASSWORD@HOST/DB to "
            "share the sweep with workers on other machines (fmnist-sweep worker)"
        )
        self.storage_edit.textChanged.connect(lambda _t: self._changed())
        for text, widget in (
            ("Tr&ials per optimizer:", self.trials_spin),
            ("&Epochs per trial:", self.epochs_spin),
            ("See&ds:", self.seeds_spin),
            ("Wor&kers:", self.jobs_spin),
            ("Data s&ubset:", self.subset_spin),
            ("Prune&r:", self.pruner_combo),
            ("Stud&y name:", self.name_edit),
            ("Stor&age:", self.storage_edit),
        ):
            label = QLabel(text)
            label.setBuddy(widget)
            form.addRow(label, widget)
        resume_row = QHBoxLayout()
        self.resume_combo = QComboBox()
        self.resume_combo.setObjectName("sweep_resume_list")
        self.resume_combo.setToolTip("The sweeps in the storage; Resume continues the chosen one")
        self.resume_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.refresh_button = QPushButton("Re&load")
        self.refresh_button.setToolTip("List the sweeps in the storage again")
        resume_row.addWidget(self.resume_combo, 1)
        resume_row.addWidget(self.refresh_button)
        resume_label = QLabel("E&xisting:")
        resume_label.setBuddy(self.resume_combo)
        form.addRow(resume_label, resume_row)
        layout.addWidget(budget)

    def _spin(self, name: str, low: int, high: int, value: int) -> QSpinBox:
        spin = QSpinBox()
        spin.setObjectName(name)
        spin.setRange(low, high)
        spin.setValue(value)
        spin.setAccelerated(True)
        spin.valueChanged.connect(lambda _v: self._changed())
        return spin

    def _changed(self) -> None:
        if not self._filling:
            self.changed.emit()

    # ----- optimizers ---------------------------------------------------------------
    def set_plugins(self, plugins: PluginHost) -> None:
        """List ``plugins``' optimizers; ticks by name survive, the defaults are ticked first."""
        ticked = set(self.checked_optimizers())
        first = not self._specs
        self.plugins = plugins
        entries = spec_entries(plugins.optimizers, plugins.records)
        self._specs = {entry.name: plugins.optimizers[entry.name] for entry in entries}
        wanted = set(DEFAULT_OPTIMIZERS) if first else ticked
        model = build_spec_model(entries, checkable=True, parent=self)
        for item in self._spec_items(model):
            if item.data(NAME_ROLE) in wanted:
                item.setCheckState(Qt.CheckState.Checked)
        model.itemChanged.connect(self._on_optimizer_ticked)
        old, self.optimizer_model = self.optimizer_model, model
        self.optimizer_filter.setSourceModel(model)
        self.optimizer_filter.set_search(self.filter_edit.text())
        old.deleteLater()
        self._rebuild_tune_rows()

    @staticmethod
    def _spec_items(model: QStandardItemModel) -> list[QStandardItem]:
        """The model's spec rows (not the plugin headers), in order."""
        items = (model.item(row) for row in range(model.rowCount()))
        return [item for item in items if not item.data(HEADER_ROLE)]

    def checked_optimizers(self) -> list[str]:
        """Ticked optimizer names, in the list's order (built-ins first)."""
        return [
            item.data(NAME_ROLE)
            for item in self._spec_items(self.optimizer_model)
            if item.checkState() == Qt.CheckState.Checked
        ]

    def set_checked(self, names: list[str]) -> None:
        """Tick exactly ``names`` (tests and the settings use it)."""
        self._filling = True
        try:
            for item in self._spec_items(self.optimizer_model):
                on = item.data(NAME_ROLE) in names
                item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
        finally:
            self._filling = False
        self._rebuild_tune_rows()
        self._changed()

    def shown_optimizers(self) -> list[str]:
        """The optimizers the search leaves in the list, in order."""
        return self.optimizer_filter.spec_names()

    def _on_optimizer_ticked(self, _item: QStandardItem) -> None:
        if self._filling:
            return
        self._rebuild_tune_rows()
        self._changed()

    # ----- the hyperparameter table --------------------------------------------------
    def _rebuild_tune_rows(self) -> None:
        """One row per tunable name of the ticked optimizers, keeping what was typed."""
        kept = {self._row_name(r): self._row_state(r) for r in range(self.tune_table.rowCount())}
        owners: dict[str, list[str]] = {}
        self._defaults = {}
        for name in self.checked_optimizers():
            for dim in candidates(self._specs[name]):
                owners.setdefault(dim.name, []).append(name)
                self._defaults.setdefault(dim.name, dim)
        self._filling = True
        table = self.tune_table
        try:
            table.setRowCount(0)
            for row, (name, who) in enumerate(owners.items()):
                dim = self._defaults[name]
                table.insertRow(row)
                tick = QTableWidgetItem()
                flags = Qt.ItemFlag.ItemIsEnabled
                if name != LR:  # lr is always tuned
                    flags |= Qt.ItemFlag.ItemIsUserCheckable
                tick.setFlags(flags)
                state = kept.get(name)
                on = name == LR or (state is not None and state[0])
                tick.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
                table.setItem(row, TUNE, tick)
                label = QTableWidgetItem(name)
                label.setFlags(Qt.ItemFlag.ItemIsEnabled)
                label.setToolTip(f"{dim.describe()}; in {', '.join(who)}")
                table.setItem(row, NAME, label)
                editable = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsEditable
                for column, value, typed in (
                    (LOW, dim.low, state[1] if state else None),
                    (HIGH, dim.high, state[2] if state else None),
                ):
                    cell = QTableWidgetItem(
                        "false" if dim.kind == "bool" and column == LOW else _number(value)
                    )
                    if dim.kind == "bool":
                        cell.setText("false" if column == LOW else "true")
                        cell.setFlags(Qt.ItemFlag.ItemIsEnabled)
                    else:
                        cell.setFlags(editable)
                        if typed is not None:
                            cell.setText(typed)
                    table.setItem(row, column, cell)
                log = QTableWidgetItem()
                if dim.kind == "bool":
                    log.setFlags(Qt.ItemFlag.ItemIsEnabled)
                else:
                    log.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
                    wanted_log = state[3] if state else dim.log
                    log.setCheckState(
                        Qt.CheckState.Checked if wanted_log else Qt.CheckState.Unchecked
                    )
                table.setItem(row, LOG, log)
        finally:
            self._filling = False

    def _cell(self, row: int, column: int) -> QTableWidgetItem:
        item = self.tune_table.item(row, column)
        assert item is not None  # every row is filled whole by _rebuild_tune_rows
        return item

    def _row_name(self, row: int) -> str:
        return self._cell(row, NAME).text()

    def _row_state(self, row: int) -> tuple[bool, str, str, bool]:
        return (
            self._cell(row, TUNE).checkState() == Qt.CheckState.Checked,
            self._cell(row, LOW).text(),
            self._cell(row, HIGH).text(),
            self._cell(row, LOG).checkState() == Qt.CheckState.Checked,
        )

    def row_of(self, name: str) -> int:
        """The table row of hyperparameter ``name`` (``KeyError`` when not listed)."""
        for row in range(self.tune_table.rowCount()):
            if self._row_name(row) == name:
                return row
        raise KeyError(name)

    def set_tuned(
        self, name: str, low: float | None = None, high: float | None = None, *, on: bool = True
    ) -> None:
        """Tick ``name`` and type its range (None keeps the cell as it is)."""
        row = self.row_of(name)
        if name != LR:
            self._cell(row, TUNE).setCheckState(
                Qt.CheckState.Checked if on else Qt.CheckState.Unchecked
            )
        if low is not None:
            self._cell(row, LOW).setText(_number(low))
        if high is not None:
            self._cell(row, HIGH).setText(_number(high))

    def _requests(self) -> list[TuneRequest]:
        requests = []
        for row in range(self.tune_table.rowCount()):
            tuned, low_text, high_text, log = self._row_state(row)
            name = self._row_name(row)
            if not tuned:
                continue
            dim = self._defaults[name]
            if dim.kind == "bool":
                requests.append(TuneRequest(name))
                continue
            low = self._bound(name, "low", low_text)
            high = self._bound(name, "high", high_text)
            if low is not None and high is not None and not low < high:
                raise FormError(
                    f"{name}: the low end ({low:g}) must be below the high end ({high:g}); "
                    "swap them or widen the range",
                    self.tune_table,
                )
            # An untouched cell keeps each optimizer's own schema bound.
            wanted = Range(
                None if low_text.strip() == _number(dim.low) else low,
                None if high_text.strip() == _number(dim.high) else high,
                None if log == dim.log else log,
            )
            if name != LR and low is None and dim.low is None:
                raise FormError(
                    f"{name} has no lower bound in its schema: type one in its Low cell",
                    self.tune_table,
                )
            if name != LR and high is None and dim.high is None:
                raise FormError(
                    f"{name} has no upper bound in its schema: type one in its High cell",
                    self.tune_table,
                )
            if name == LR and wanted == Range():
                continue  # lr is tuned anyway, on its default range
            requests.append(TuneRequest(name, wanted if wanted != Range() else None))
        return requests

    def _bound(self, name: str, side: str, text: str) -> float | None:
        text = text.strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            raise FormError(
                f"{name}: the {side} end {text!r} is not a number; type one such as 0.001",
                self.tune_table,
            ) from None
        if not math.isfinite(value):
            raise FormError(f"{name}: the {side} end must be a finite number", self.tune_table)
        return value

    # ----- the whole plan ---------------------------------------------------------------
    def storage_url(self) -> str | None:
        return self.storage_edit.text().strip() or None

    def plan(self) -> SweepPlan:
        """The new (or continued) sweep as set here; ``FormError`` names what to fix."""
        if self.plugins is None:
            raise FormError("the plugins are still loading; wait a moment")
        optimizers = self.checked_optimizers()
        if not optimizers:
            raise FormError(
                "no optimizer is ticked: tick at least one in the Optimizers list "
                "(e.g. sgd and adam)",
                self.optimizer_list,
            )
        name = self._name()
        requests = self._requests()
        settings = {
            "trials": self.trials_spin.value(),
            "epochs": self.epochs_spin.value(),
            "seeds": self.seeds_spin.value(),
            "subset": self.subset_spin.value() or None,
            "pruner": self.pruner_combo.currentData(),
        }
        try:
            spaces = build_spaces([self._specs[o] for o in optimizers], requests)
            SweepSpec(spaces=tuple(spaces), **settings).validate()
        except FmnistError as exc:
            raise FormError(f"{exc}", self.tune_table) from None
        return SweepPlan(
            name=name,
            storage_url=self.storage_url(),
            jobs=self.jobs_spin.value(),
            optimizers=tuple(optimizers),
            tune=tuple(requests),
            settings=settings,
        )

    def resume_plan(self) -> SweepPlan:
        """Continue the sweep chosen in the Existing list."""
        name = self.resume_combo.currentText().strip()
        if not name:
            raise FormError(
                "no sweep to resume in this storage: start one first, or give the Storage "
                "that holds it and press Reload",
                self.resume_combo,
            )
        return SweepPlan(
            name=name, storage_url=self.storage_url(), jobs=self.jobs_spin.value(), resume=True
        )

    def _name(self) -> str:
        try:
            return check_name(self.name_edit.text().strip())
        except FmnistError as exc:
            raise FormError(str(exc), self.name_edit) from None

    def set_sweep_names(self, names: list[str], current: str | None = None) -> None:
        """Fill the Existing list; ``current`` (or the study name) is chosen when listed."""
        wanted = current or self.resume_combo.currentText() or self.name_edit.text().strip()
        self.resume_combo.clear()
        self.resume_combo.addItems(names)
        if wanted in names:
            self.resume_combo.setCurrentText(wanted)

    def focus_chain(self) -> list[QWidget]:
        return [
            self.filter_edit,
            self.optimizer_list,
            self.tune_table,
            self.trials_spin,
            self.epochs_spin,
            self.seeds_spin,
            self.jobs_spin,
            self.subset_spin,
            self.pruner_combo,
            self.name_edit,
            self.storage_edit,
            self.resume_combo,
            self.refresh_button,
        ]
