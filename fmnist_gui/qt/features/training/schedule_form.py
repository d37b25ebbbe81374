"""The learning-rate schedule of a new model: a chooser and its parameters.

Like the optimizer's, the chooser lists every ``SchedulerSpec`` the plugin
host registered and the parameter fields come from the spec's ``Param``
schema. Values typed for one schedule are kept while the user looks at another.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

from fmnist_gui.qt.features.training.control_panel import FieldError, ParamForm, form_label
from fmnist_gui.training.config import TrainConfig

DEFAULT_SCHEDULER = TrainConfig().scheduler


class ScheduleForm(QGroupBox):
    """Which schedule a new model trains with; ``values()`` parses its parameters."""

    edited = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Learning-rate schedule", parent)
        self.setObjectName("schedule")
        self.plugins: Any = None
        self.memory: dict[str, dict[str, Any]] = {}  # typed values per schedule name
        self._current: str | None = None
        self.combo = QComboBox()
        self.combo.setObjectName("scheduler")
        self.combo.setToolTip(
            "How the learning rate moves during the run, stepped once per batch. "
            "Constant is the tutorial's."
        )
        self.combo.currentIndexChanged.connect(self._changed)
        self.params = ParamForm("")
        self.params.setFlat(True)
        self.params.edited.connect(self.edited)
        self.description = QLabel()
        self.description.setWordWrap(True)
        self.description.setEnabled(False)
        row = QWidget()
        form = QFormLayout(row)
        form.setContentsMargins(0, 0, 0, 0)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow(form_label("Schedule:"), self.combo)
        column = QVBoxLayout(self)
        column.addWidget(row)
        column.addWidget(self.description)
        column.addWidget(self.params)
        self.set_plugins(None)

    # ----- plugins ----------------------------------------------------------------
    def set_plugins(self, plugins: Any) -> None:
        """List the host's schedules (``None``: still loading); the choice is kept."""
        self.remember()
        self.plugins = plugins
        current = self.combo.currentData() or DEFAULT_SCHEDULER
        self.combo.blockSignals(True)
        self.combo.clear()
        for name, spec in getattr(plugins, "schedulers", {}).items():
            self.combo.addItem(spec.label or name, name)
            self.combo.setItemData(
                self.combo.count() - 1,
                f"{spec.description}\nPlugin: {spec.plugin}".strip(),
                Qt.ItemDataRole.ToolTipRole,
            )
        if plugins is None:
            self.combo.addItem("Loading plugins…", None)
        self.combo.setCurrentIndex(max(self.combo.findData(current), 0))
        self.combo.setEnabled(plugins is not None)
        self.combo.blockSignals(False)
        self._current = None  # the fields are rebuilt from memory, not filed over it
        self._changed()

    def spec(self) -> Any:
        """The chosen ``SchedulerSpec`` (None while the plugins load or none is chosen)."""
        name = self.combo.currentData()
        if self.plugins is None or name is None:
            return None
        return self.plugins.schedulers.get(name)

    def _changed(self, *_args) -> None:
        self.remember()
        spec = self.spec()
        self.params.set_params(
            spec.params if spec else (), self.memory.get(getattr(spec, "name", ""))
        )
        self.params.setVisible(bool(spec and spec.params))
        self.description.setText(spec.description if spec else "")
        self.description.setVisible(bool(spec and spec.description))
        self._current = spec.name if spec else None
        self.edited.emit()

    def remember(self) -> None:
        """File the fields' text under the schedule they belong to."""
        if self._current and self.params.params:
            self.memory[self._current] = self.params.raw_values()

    # ----- values -----------------------------------------------------------------
    def values(self) -> tuple[str | None, dict[str, Any], list[FieldError]]:
        """The schedule's name, its parsed parameters and the fields that do not parse."""
        spec = self.spec()
        if spec is None:
            message = "no schedule plugin is loaded (see Plugins)"
            return None, {}, [FieldError(self.combo, message)]
        params, errors = self.params.values()
        return spec.name, params, errors

    def set_schedule(self, name: str, params: dict[str, Any]) -> None:
        """Show ``name`` with ``params`` (e.g. a model's settings copied into the form)."""
        self.memory[name] = dict(params)
        self._current = None
        index = self.combo.findData(name)
        if index >= 0 and index != self.combo.currentIndex():
            self.combo.setCurrentIndex(index)
        else:
            self._changed()

    def choose(self, name: str) -> None:
        """Choose ``name`` if it is listed, its fields from what was typed for it."""
        index = self.combo.findData(name)
        if index >= 0:
            self.combo.setCurrentIndex(index)

    def fields(self) -> list[QWidget]:
        """The chooser and the parameter fields, in reading order."""
        return [self.combo, *self.params.fields.values()]

    def set_locked(self, locked: bool) -> None:
        self.combo.setEnabled(not locked and self.plugins is not None)
        self.params.setEnabled(not locked)


__all__ = ["ScheduleForm"]
