"""The side panel: training settings, optimizer and loss with forms built from plugin schemas.

Nothing here names an optimizer or a loss. The combo boxes list what the
``PluginHost`` registered, and each hyperparameter field comes from the
spec's ``Param`` (kind, default, range, help text). Every value is checked
with the same code the CLI uses (``Param.parse``, ``TrainConfig.validate``),
so the form cannot accept what the engine would refuse.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QIntValidator, QRegularExpressionValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from fmnist_gui.plugins.specs import Param, ParamError
from fmnist_gui.qt.widgets.spec_chooser import SpecChooser
from fmnist_gui.training.config import DEVICES, MAX_BATCH_SIZE, ConfigError, TrainConfig

INVALID_STYLE = "border: 2px solid #d9534f; border-radius: 3px;"
# One label column width for every form in the panel, so their fields line up.
LABEL_WIDTH = 108


def form_label(text: str) -> QLabel:
    label = QLabel(text)
    label.setMinimumWidth(LABEL_WIDTH)
    label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return label


# Characters a number (or a comma-separated list of them) can contain; the
# real check is Param.parse, this only stops letters from being typed.
_NUMBER_CHARS = r"[-+0-9.,eE \s()infaINFA]*"


class CheckedSpinBox(QSpinBox):
    """A spin box that says when it refuses what was typed, instead of silently reverting."""

    refused = Signal(str)  # the text that was typed and not kept

    def fixup(self, text: str) -> str:
        # Qt calls this when editing ends on a value out of range ("0" for 1..60000),
        # then goes back to the last good value.
        if text.strip():
            self.refused.emit(text.strip())
        return super().fixup(text)


@dataclass
class FieldError:
    widget: QWidget
    message: str


class ParamForm(QGroupBox):
    """A form for one spec's ``Param`` schema: a field per parameter, tooltips from help."""

    edited = Signal()

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self.layout_ = QFormLayout(self)
        self.layout_.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.layout_.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.params: tuple[Param, ...] = ()
        self.fields: dict[str, QCheckBox | QLineEdit] = {}
        self._empty = QLabel("No hyperparameters.")
        self._empty.setEnabled(False)

    def set_params(self, params: tuple[Param, ...], values: dict[str, Any] | None = None) -> None:
        while self.layout_.rowCount():
            self.layout_.removeRow(0)
        self._empty = QLabel("No hyperparameters.")
        self._empty.setEnabled(False)
        self.params = tuple(params)
        self.fields = {}
        values = values or {}
        for param in self.params:
            value = values.get(param.name, param.default)
            tip = param.help or param.name
            if param.describe_range():
                tip += f"\nAllowed: {param.describe_range()}."
            tip += f"\nDefault: {param.format(param.default)}."
            field: QCheckBox | QLineEdit
            if param.kind == "bool":
                box = QCheckBox()
                box.setChecked(
                    value if isinstance(value, bool) else str(value).lower() in ("true", "1")
                )
                box.toggled.connect(self.edited)
                field = box
            else:
                edit = QLineEdit()
                if isinstance(value, str):
                    edit.setText(value)  # as typed (remembered text), checked at Start
                else:
                    try:
                        edit.setText(param.format(param.coerce(value)))
                    except (ParamError, TypeError, ValueError):
                        edit.setText(param.format(param.default))
                edit.setPlaceholderText(param.format(param.default))
                if param.kind == "int":
                    edit.setValidator(QIntValidator(edit))
                else:
                    edit.setValidator(QRegularExpressionValidator(_NUMBER_CHARS, edit))
                edit.textEdited.connect(self.edited)
                field = edit
            field.setToolTip(tip)
            field.setObjectName(f"param_{param.name}")
            label = form_label(param.name.replace("_", " ") + ":")
            label.setToolTip(tip)
            self.layout_.addRow(label, field)
            self.fields[param.name] = field
        if not self.params:
            self.layout_.addRow(self._empty)

    def values(self) -> tuple[dict[str, Any], list[FieldError]]:
        """The parsed values and the fields that do not parse."""
        values: dict[str, Any] = {}
        errors: list[FieldError] = []
        for param in self.params:
            field = self.fields[param.name]
            if isinstance(field, QCheckBox):
                values[param.name] = field.isChecked()
                continue
            try:
                values[param.name] = param.parse(field.text() or param.format(param.default))
            except ParamError as exc:
                errors.append(FieldError(field, str(exc)))
        return values, errors

    def raw_values(self) -> dict[str, Any]:
        """Field contents as typed (for the settings), parse or not."""
        return {
            p.name: (f.isChecked() if isinstance(f, QCheckBox) else f.text())
            for p, f in ((p, self.fields[p.name]) for p in self.params)
        }


class ControlPanel(QWidget):
    """Training settings. ``config()`` returns a checked ``TrainConfig`` or ``None``.

    When a value is bad, ``config()`` outlines the field in red, and
    ``message`` (under the form) says what is wrong and what is allowed.
    """

    edited = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plugins: Any = None
        # Values typed per optimizer/loss, kept when the user switches back and forth.
        self._param_memory: dict[str, dict[str, Any]] = {}
        self._build()
        self.set_plugins(None)

    def _build(self) -> None:
        defaults = TrainConfig()

        self.optimizer_combo = SpecChooser()
        self.optimizer_combo.setObjectName("optimizer")
        self.loss_combo = QComboBox()
        self.loss_combo.setObjectName("loss")
        self.optimizer_combo.currentIndexChanged.connect(self._optimizer_changed)
        self.loss_combo.currentIndexChanged.connect(self._loss_changed)

        self.lr_edit = QLineEdit(f"{defaults.lr:g}")
        self.lr_edit.setObjectName("lr")
        self.lr_edit.setValidator(QRegularExpressionValidator(_NUMBER_CHARS, self.lr_edit))
        self.lr_edit.setToolTip(
            "Learning rate: how far each optimizer step moves the weights "
            "(a number above 0; the tutorial uses 1e-3)."
        )
        self.epochs_spin = CheckedSpinBox()
        self.epochs_spin.setObjectName("epochs")
        self.epochs_spin.setRange(1, 10_000)
        self.epochs_spin.setValue(defaults.epochs)
        self.epochs_spin.setToolTip(
            "Passes over the 60,000 training images (the tutorial uses 10)."
        )
        self.batch_spin = CheckedSpinBox()
        self.batch_spin.setObjectName("batch_size")
        self.batch_spin.setRange(1, MAX_BATCH_SIZE)
        self.batch_spin.setValue(defaults.batch_size)
        self.batch_spin.setToolTip("Images per optimizer step (the tutorial uses 64).")
        self.seed_edit = QLineEdit()
        self.seed_edit.setObjectName("seed")
        self.seed_edit.setPlaceholderText("random")
        self.seed_edit.setValidator(QRegularExpressionValidator(r"[0-9]*", self.seed_edit))
        self.seed_edit.setToolTip(
            "Seeds torch first, as torch.manual_seed(S) at the top of the "
            "tutorial: the same seed gives the same weights and losses. "
            "Empty: a new random seed each reset."
        )
        self.shuffle_check = QCheckBox("each epoch")
        self.shuffle_check.setObjectName("shuffle")
        self.shuffle_check.setToolTip(
            "Shuffle the training images at the start of each epoch. The tutorial does not shuffle."
        )
        self.device_combo = QComboBox()
        self.device_combo.setObjectName("device")
        for name in DEVICES:
            self.device_combo.addItem(name, name)
        self.device_combo.setToolTip("auto: CUDA when available, else the CPU.")

        for edit in (self.lr_edit, self.seed_edit):
            edit.textEdited.connect(self._field_edited)
        for spin in (self.epochs_spin, self.batch_spin):
            spin.valueChanged.connect(self._field_edited)
        self.epochs_spin.refused.connect(
            lambda text: self._refused(self.epochs_spin, "Epochs", text)
        )
        self.batch_spin.refused.connect(
            lambda text: self._refused(self.batch_spin, "Batch size", text)
        )
        self.shuffle_check.toggled.connect(self._field_edited)
        self.device_combo.currentIndexChanged.connect(self._field_edited)

        training = QWidget()
        form = QFormLayout(training)
        form.setContentsMargins(0, 0, 0, 0)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for text, field in (
            ("Optimizer:", self.optimizer_combo),
            ("Loss:", self.loss_combo),
            ("Learning rate:", self.lr_edit),
            ("Epochs:", self.epochs_spin),
            ("Batch size:", self.batch_spin),
            ("Seed:", self.seed_edit),
            ("Device:", self.device_combo),
            ("Shuffle:", self.shuffle_check),
        ):
            form.addRow(form_label(text), field)
        self.training_form = form

        self.optimizer_form = ParamForm("Optimizer hyperparameters")
        self.optimizer_form.edited.connect(self._field_edited)
        self.optimizer_description = QLabel()
        self.optimizer_description.setWordWrap(True)
        self.optimizer_description.setEnabled(False)
        self.loss_form = ParamForm("Loss hyperparameters")
        self.loss_form.edited.connect(self._field_edited)
        from fmnist_gui.qt.features.training.schedule_form import ScheduleForm

        self.schedule_form = ScheduleForm()
        self.schedule_form.edited.connect(self._field_edited)
        # After the form has built the chosen schedule's fields (connected first).
        self.schedule_form.combo.currentIndexChanged.connect(lambda _i: self._fix_tab_order())

        self.message = QLabel()
        self.message.setObjectName("form_message")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #d9534f;")
        self.message.hide()

        # Everything below defines a model that does not exist yet; the live model's own
        # settings are shown read-only above it (insert_top), never read from here.
        new_model = QGroupBox("Settings for a new model")
        new_model.setObjectName("new_model")
        new_column = QVBoxLayout(new_model)
        self.new_model_note = QLabel()
        self.new_model_note.setObjectName("new_model_note")
        self.new_model_note.setWordWrap(True)
        self.new_model_note.setEnabled(False)
        self.new_model_note.hide()
        new_column.addWidget(self.new_model_note)
        new_column.addWidget(training)
        new_column.addWidget(self.optimizer_form)
        new_column.addWidget(self.optimizer_description)
        new_column.addWidget(self.loss_form)
        new_column.addWidget(self.schedule_form)
        new_column.addWidget(self.message)
        self.new_model_box = new_model

        inner = QWidget()
        column = QVBoxLayout(inner)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(new_model)
        column.addStretch(1)
        self.column = column
        scroll = QScrollArea()
        scroll.setWidget(inner)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)
        self.setMinimumWidth(320)

    def insert_top(self, widget: QWidget) -> None:
        """Show ``widget`` above the new-model settings, in the same scrolling column."""
        self.column.insertWidget(0, widget)

    def set_note(self, text: str) -> None:
        """A line at the top of the new-model settings ("" hides it)."""
        self.new_model_note.setText(text)
        self.new_model_note.setVisible(bool(text))

    # ----- plugins ----------------------------------------------------------------
    def set_plugins(self, plugins: Any) -> None:
        """Fill the combo boxes from a ``PluginHost`` (``None``: still loading)."""
        self.plugins = plugins
        current_opt = self.optimizer_combo.currentData()
        current_loss = self.loss_combo.currentData()
        for combo, table, current in (
            (self.optimizer_combo, getattr(plugins, "optimizers", {}), current_opt),
            (self.loss_combo, getattr(plugins, "losses", {}), current_loss),
        ):
            combo.blockSignals(True)
            combo.clear()
            if isinstance(combo, SpecChooser):
                combo.set_specs(table, getattr(plugins, "records", None))
            else:
                for name, spec in table.items():
                    combo.addItem(spec.label or name, name)
                    combo.setItemData(
                        combo.count() - 1,
                        f"{spec.description}\nPlugin: {spec.plugin}".strip(),
                        Qt.ItemDataRole.ToolTipRole,
                    )
            if plugins is None:
                combo.addItem("Loading plugins…", None)
            index = combo.findData(current)
            combo.setCurrentIndex(max(index, 0))
            combo.setEnabled(plugins is not None)
            combo.blockSignals(False)
        self.schedule_form.set_plugins(plugins)
        self._optimizer_changed()
        self._loss_changed()

    def _spec(self, kind: str):
        combo = self.optimizer_combo if kind == "optimizer" else self.loss_combo
        name = combo.currentData()
        if self.plugins is None or name is None:
            return None
        table = self.plugins.optimizers if kind == "optimizer" else self.plugins.losses
        return table.get(name)

    def _optimizer_changed(self, *_args) -> None:
        self._remember_params()
        spec = self._spec("optimizer")
        memory = self._param_memory.get(f"optimizer:{getattr(spec, 'name', '')}")
        self.optimizer_form.set_params(spec.params if spec else (), memory)
        self.optimizer_form.setTitle(
            f"{spec.label} hyperparameters" if spec else "Optimizer hyperparameters"
        )
        self.optimizer_description.setText(spec.description if spec else "")
        self.optimizer_description.setVisible(bool(spec and spec.description))
        self._current_opt = spec.name if spec else None
        self._fix_tab_order()
        self._field_edited()

    def _loss_changed(self, *_args) -> None:
        self._remember_params()
        spec = self._spec("loss")
        self.loss_form.set_params(
            spec.params if spec else (), self._param_memory.get(f"loss:{getattr(spec, 'name', '')}")
        )
        self.loss_form.setVisible(bool(spec and spec.params))
        self._current_loss = spec.name if spec else None
        self._fix_tab_order()
        self._field_edited()

    def tab_chain(self) -> list[QWidget]:
        """The form's fields in reading order: the order Tab visits them."""
        return [
            self.optimizer_combo,
            self.loss_combo,
            self.lr_edit,
            self.epochs_spin,
            self.batch_spin,
            self.seed_edit,
            self.device_combo,
            self.shuffle_check,
            *self.optimizer_form.fields.values(),
            *self.loss_form.fields.values(),
            *self.schedule_form.fields(),
        ]

    def _fix_tab_order(self) -> None:
        # Fields built for a newly chosen optimizer join the end of the window's focus
        # chain, after every other pane: put them back after the fields above them.
        chain = self.tab_chain()
        for first, second in zip(chain, chain[1:], strict=False):
            QWidget.setTabOrder(first, second)

    def _remember_params(self) -> None:
        for kind, form in (("optimizer", self.optimizer_form), ("loss", self.loss_form)):
            name = getattr(self, f"_current_{'opt' if kind == 'optimizer' else 'loss'}", None)
            if name and form.params:
                self._param_memory[f"{kind}:{name}"] = form.raw_values()

    # ----- values -----------------------------------------------------------------
    def _field_edited(self, *_args) -> None:
        # Clear the red outline as soon as the user touches the form again.
        self._mark_errors([])
        self.edited.emit()

    def _refused(self, spin: QSpinBox, what: str, text: str) -> None:
        kept = spin.value()
        message = (
            f"{what} {text} is not allowed (from {spin.minimum():,} to {spin.maximum():,}): "
            f"kept {kept:,}."
        )

        def show() -> None:
            # After the spin box has put its last good value back (which clears messages).
            self.message.setText(message)
            self.message.show()

        QTimer.singleShot(0, show)

    def _mark_errors(self, errors: list[FieldError]) -> None:
        bad = {id(e.widget) for e in errors}
        for widget in self._all_fields():
            widget.setStyleSheet(INVALID_STYLE if id(widget) in bad else "")
            widget.setProperty("invalid", id(widget) in bad)
        if errors:
            self.message.setText("Cannot start: " + "; ".join(e.message for e in errors))
            self.message.show()
            errors[0].widget.setFocus()
        else:
            self.message.clear()
            self.message.hide()

    def _all_fields(self) -> list[QWidget]:
        return [
            self.lr_edit,
            self.epochs_spin,
            self.batch_spin,
            self.seed_edit,
            self.optimizer_combo,
            self.loss_combo,
            *self.optimizer_form.fields.values(),
            *self.loss_form.fields.values(),
            *self.schedule_form.fields(),
        ]

    def collect(self) -> tuple[TrainConfig | None, list[FieldError]]:
        """Read and check every field; highlight the bad ones."""
        errors: list[FieldError] = []
        opt_spec, loss_spec = self._spec("optimizer"), self._spec("loss")
        if opt_spec is None:
            errors.append(
                FieldError(self.optimizer_combo, "no optimizer plugin is loaded (see Plugins)")
            )
        if loss_spec is None:
            errors.append(FieldError(self.loss_combo, "no loss plugin is loaded (see Plugins)"))
        lr: Any = None
        text = self.lr_edit.text().strip()
        try:
            lr = float(text)
            TrainConfig(lr=lr).validate()
        except ValueError as exc:
            message = (
                str(exc)
                if isinstance(exc, ConfigError)
                else (f"learning rate {text!r} is not a number (the tutorial uses 1e-3)")
            )
            errors.append(FieldError(self.lr_edit, message))
        seed_text = self.seed_edit.text().strip()
        seed = None
        if seed_text:
            try:
                seed = int(seed_text)
                TrainConfig(seed=seed).validate()
            except ValueError as exc:
                errors.append(
                    FieldError(
                        self.seed_edit,
                        str(exc)
                        if isinstance(exc, ConfigError)
                        else f"seed {seed_text!r} is not a whole number",
                    )
                )
        opt_params, opt_errors = self.optimizer_form.values()
        loss_params, loss_errors = self.loss_form.values()
        scheduler, sched_params, sched_errors = self.schedule_form.values()
        errors += opt_errors + loss_errors + sched_errors
        config = None
        if not errors and scheduler is not None:  # no schedule is among the errors
            config = TrainConfig(
                epochs=self.epochs_spin.value(),
                batch_size=self.batch_spin.value(),
                lr=lr,
                optimizer=opt_spec.name,
                optimizer_params=opt_params,
                loss=loss_spec.name,
                loss_params=loss_params,
                scheduler=scheduler,
                scheduler_params=sched_params,
                seed=seed,
                shuffle=self.shuffle_check.isChecked(),
                device=self.device_combo.currentData(),
            )
            try:
                config.validate()
            except ConfigError as exc:
                errors.append(FieldError(self.epochs_spin, str(exc)))
                config = None
        self._mark_errors(errors)
        return config, errors

    def config(self) -> TrainConfig | None:
        return self.collect()[0]

    def show_error(self, widget_name: str, message: str) -> None:
        """Outline one field and show ``message`` (for errors found later, e.g. by the engine)."""
        widget = self.findChild(QWidget, widget_name) or self.optimizer_combo
        self._mark_errors([FieldError(widget, message)])

    def set_config(self, config: TrainConfig) -> None:
        """Show ``config`` in the form (after a checkpoint load, for example)."""
        self.lr_edit.setText(f"{config.lr:g}")
        self.epochs_spin.setValue(config.epochs)
        self.batch_spin.setValue(config.batch_size)
        self.seed_edit.setText("" if config.seed is None else str(config.seed))
        self.shuffle_check.setChecked(config.shuffle)
        self.device_combo.setCurrentIndex(max(self.device_combo.findData(config.device), 0))
        self._param_memory[f"optimizer:{config.optimizer}"] = dict(config.optimizer_params)
        self._param_memory[f"loss:{config.loss}"] = dict(config.loss_params)
        for combo, name in (
            (self.optimizer_combo, config.optimizer),
            (self.loss_combo, config.loss),
        ):
            index = combo.findData(name)
            if index >= 0 and index != combo.currentIndex():
                combo.setCurrentIndex(index)
        # Re-show the params even when the combo did not change.
        self._current_opt = self._current_loss = None
        spec = self._spec("optimizer")
        if spec is not None:
            self.optimizer_form.set_params(spec.params, config.optimizer_params)
            self._current_opt = spec.name
        spec = self._spec("loss")
        if spec is not None:
            self.loss_form.set_params(spec.params, config.loss_params)
            self._current_loss = spec.name
        self.schedule_form.set_schedule(config.scheduler, config.scheduler_params)

    # ----- settings ---------------------------------------------------------------
    def save_settings(self, settings: QSettings) -> None:
        self._remember_params()
        settings.beginGroup("training")
        settings.setValue("optimizer", self.optimizer_combo.currentData() or "")
        settings.setValue("loss", self.loss_combo.currentData() or "")
        settings.setValue("lr", self.lr_edit.text())
        settings.setValue("epochs", self.epochs_spin.value())
        settings.setValue("batch_size", self.batch_spin.value())
        # The seed is not kept: a new model gets a random one unless the user types one.
        settings.remove("seed")
        settings.setValue("shuffle", self.shuffle_check.isChecked())
        settings.setValue("device", self.device_combo.currentData())
        settings.setValue("params", json.dumps(self._param_memory))
        self.schedule_form.remember()
        settings.setValue("scheduler", self.schedule_form.combo.currentData() or "")
        settings.setValue("scheduler_params", json.dumps(self.schedule_form.memory))
        settings.endGroup()

    def restore_settings(self, settings: QSettings) -> None:
        """Bring back the last session's values; anything unreadable keeps its default."""
        settings.beginGroup("training")
        try:
            try:
                memory = json.loads(str(settings.value("params", "{}") or "{}"))
                if isinstance(memory, dict):
                    self._param_memory.update(memory)
            except (TypeError, ValueError):
                pass
            self.lr_edit.setText(str(settings.value("lr", self.lr_edit.text())))
            for spin, key in ((self.epochs_spin, "epochs"), (self.batch_spin, "batch_size")):
                with contextlib.suppress(TypeError, ValueError):  # unreadable: keep the default
                    spin.setValue(int(str(settings.value(key, spin.value()))))
            self.shuffle_check.setChecked(
                str(settings.value("shuffle", False)).lower() in ("true", "1")
            )
            # Switching the combos below must not file the defaults over the saved values.
            self._current_opt = self._current_loss = None
            index = self.device_combo.findData(settings.value("device", "auto"))
            self.device_combo.setCurrentIndex(max(index, 0))
            for combo, key in ((self.optimizer_combo, "optimizer"), (self.loss_combo, "loss")):
                index = combo.findData(settings.value(key, ""))
                if index >= 0:
                    combo.setCurrentIndex(index)
            self._restore_schedule(settings)
        finally:
            settings.endGroup()
        self._current_opt = self._current_loss = None
        self._optimizer_changed()
        self._loss_changed()

    def _restore_schedule(self, settings: QSettings) -> None:
        try:
            memory = json.loads(str(settings.value("scheduler_params", "{}") or "{}"))
        except (TypeError, ValueError):
            memory = {}
        if isinstance(memory, dict):
            self.schedule_form.memory.update(
                {k: v for k, v in memory.items() if isinstance(v, dict)}
            )
        name = str(settings.value("scheduler", "") or "")
        if name:
            self.schedule_form.set_schedule(name, self.schedule_form.memory.get(name, {}))

    def set_locked(self, locked: bool, *, allow_epochs: bool = False) -> None:
        """Freeze the settings that define the model being trained.

        While a trainer holds progress only the number of epochs may change
        (raising it lets Start continue); Reset unlocks everything.
        """
        for widget in self._all_fields() + [
            self.shuffle_check,
            self.device_combo,
            self.optimizer_form,
            self.loss_form,
        ]:
            widget.setEnabled(not locked)
        self.epochs_spin.setEnabled(not locked or allow_epochs)
        self.schedule_form.set_locked(locked)
        if self.plugins is None:
            self.optimizer_combo.setEnabled(False)
            self.loss_combo.setEnabled(False)
