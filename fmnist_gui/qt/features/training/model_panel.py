"""The Current model box: the live model's own settings, read-only.

The live ``Trainer`` is the one source of truth for the model it trains: this
box shows its config (optimizer and hyperparameters, loss, lr, batch size,
seed, shuffle, device, schedule if any, epochs done) and never the form's.
The form below it holds the settings for a *new* model. Two things can be
changed here: how many epochs Continue trains the model to, and, while it
trains, is paused or waits to continue, its learning rate and the optimizer
hyperparameters its plugin marks live (``Param(live=True)``), through
"Apply now": a live change, applied at a batch boundary and recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from fmnist_gui.plugins.specs import Param, ParamError
from fmnist_gui.qt.features.training.control_panel import form_label

if TYPE_CHECKING:
    from fmnist_gui.training.trainer import Trainer

NO_MODEL = "No model yet: Start trains a new model with the settings below."


def _format_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in params.items()) or "none"


class ModelPanel(QGroupBox):
    """What the live model is, read from its trainer; ``epochs_target`` is what Continue uses."""

    epochs_edited = Signal()
    use_settings = Signal()  # copy this model's settings into the new-model form
    apply_live = Signal(object)  # {name: value} to change in the live model now

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Current model", parent)
        self.setObjectName("current_model")
        self.rows: dict[str, QLabel] = {}
        self.form = QFormLayout(self)
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.empty = QLabel(NO_MODEL)
        self.empty.setWordWrap(True)
        self.empty.setEnabled(False)
        self.form.addRow(self.empty)
        for key, text in (
            ("optimizer", "Optimizer:"),
            ("hyperparameters", "Hyperparameters:"),
            ("loss", "Loss:"),
            ("lr", "Learning rate:"),
            ("batch_size", "Batch size:"),
            ("seed", "Seed:"),
            ("data", "Data:"),
            ("schedule", "Schedule:"),
        ):
            value = QLabel()
            value.setObjectName(f"model_{key}")
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.rows[key] = value
            self.form.addRow(form_label(text), value)
        self.epochs_target = QSpinBox()
        self.epochs_target.setObjectName("model_epochs_target")
        self.epochs_target.setRange(1, 10_000)
        self.epochs_target.setPrefix("to ")
        self.epochs_target.setToolTip(
            "How many epochs in all Continue trains this model to. Everything else about "
            "the model stays as it was created."
        )
        self.epochs_target.valueChanged.connect(lambda _v: self.epochs_edited.emit())
        self.epochs_done = QLabel()
        self.epochs_done.setObjectName("model_epochs_done")
        epochs = QWidget()
        row = QHBoxLayout(epochs)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.epochs_done)
        row.addWidget(self.epochs_target, 1)
        self.epochs_row = epochs
        self.form.addRow(form_label("Epochs done:"), epochs)
        self.problem = QLabel()
        self.problem.setObjectName("model_problem")
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #d9534f;")
        self.form.addRow(self.problem)
        self._build_live()
        self.use_button = QPushButton("Use these settings for a new model")
        self.use_button.setObjectName("use_model_settings")
        self.use_button.setToolTip(
            "Copy this model's settings into the form below (the seed stays random)."
        )
        self.use_button.clicked.connect(self.use_settings)
        self.form.addRow(self.use_button)
        self.show_trainer(None)

    def _build_live(self) -> None:
        box = QGroupBox("Change now")
        box.setObjectName("live_changes")
        box.setToolTip(
            "Change the live model's learning rate and the hyperparameters its optimizer "
            "allows while it trains: applied at the next batch boundary, recorded with its "
            "step, marked on the loss plot and saved with the model. Under a schedule, the "
            "schedule goes on from the new lr (one-cycle sets its own lr each batch)."
        )
        self.live_form = QFormLayout(box)
        self.live_form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.live_params: dict[str, Param] = {}
        self.live_fields: dict[str, QLineEdit] = {}
        self.apply_button = QPushButton("Apply now")
        self.apply_button.setObjectName("apply_live")
        self.apply_button.setToolTip("Apply the values typed above at the next batch boundary")
        self.apply_button.clicked.connect(self._apply_clicked)
        self.live_message = QLabel()
        self.live_message.setObjectName("live_message")
        self.live_message.setWordWrap(True)
        self.live_message.hide()
        self.live_box = box
        self.form.addRow(box)

    def set_live_params(self, params: dict[str, Param]) -> None:
        """One field per hyperparameter that may change now (``lr`` first)."""
        if list(params) == list(self.live_params):
            return
        kept = (self.apply_button, self.live_message)
        while self.live_form.rowCount():
            row = self.live_form.takeRow(0)
            for item in (row.labelItem, row.fieldItem):
                widget = item.widget() if item is not None else None
                if widget is not None and widget not in kept:
                    widget.hide()
                    widget.deleteLater()
        self.live_params = dict(params)
        self.live_fields = {}
        for name, param in params.items():
            field = QLineEdit()
            field.setObjectName(f"live_{name}")
            field.setToolTip(param.help or name)
            field.returnPressed.connect(self._apply_clicked)
            self.live_fields[name] = field
            self.live_form.addRow(form_label(name.replace("_", " ") + ":"), field)
        self.live_form.addRow(self.live_message)
        self.live_form.addRow(self.apply_button)

    def show_live_values(self, values: dict[str, Any]) -> None:
        """The values the model trains with now, as each field's grey hint."""
        for name, field in self.live_fields.items():
            if name in values:
                field.setPlaceholderText(f"now {self.live_params[name].format(values[name])}")

    def live_values(self) -> tuple[dict[str, Any], str]:
        """The values typed (empty fields change nothing) and what is wrong with them."""
        values: dict[str, Any] = {}
        for name, field in self.live_fields.items():
            text = field.text().strip()
            if not text:
                continue
            try:
                values[name] = self.live_params[name].parse(text)
            except ParamError as exc:
                return {}, str(exc)
        return values, ("" if values else "Type a new value first.")

    def _apply_clicked(self) -> None:
        values, problem = self.live_values()
        if problem:
            self.say_live(problem, error=True)
            return
        self.apply_live.emit(values)

    def say_live(self, text: str, *, error: bool = False) -> None:
        """A line under the live fields ("" hides it)."""
        self.live_message.setText(text)
        self.live_message.setStyleSheet("color: #d9534f;" if error else "")
        self.live_message.setVisible(bool(text))

    def clear_live_fields(self) -> None:
        for field in self.live_fields.values():
            field.clear()

    def set_live_enabled(self, enabled: bool, why: str = "") -> None:
        """Whether changes may be applied now; ``why`` says why not, in the status tip."""
        self.live_box.setEnabled(enabled)
        self.apply_button.setToolTip(
            why or "Apply the values typed above at the next batch boundary"
        )

    def _set_rows_visible(self, visible: bool) -> None:
        for row in range(self.form.rowCount()):
            for role in (QFormLayout.ItemRole.LabelRole, QFormLayout.ItemRole.FieldRole):
                item = self.form.itemAt(row, role)
                widget = item.widget() if item is not None else None
                if widget is not None:
                    widget.setVisible(visible)
        self.empty.setVisible(not visible)

    def show_trainer(
        self, trainer: Trainer | None, *, imported: str = "", problem: str = ""
    ) -> None:
        """Show ``trainer``'s own settings (``None``: no model)."""
        if trainer is None:
            self._set_rows_visible(False)
            self.empty.setText(imported or NO_MODEL)
            self.problem.hide()
            return
        self._set_rows_visible(True)
        config = trainer.config
        spec = trainer.optimizer_spec
        rows = self.rows
        rows["optimizer"].setText(f"{spec.label or spec.name} (plugin {spec.plugin})")
        rows["hyperparameters"].setText(_format_params(trainer.optimizer_params))
        loss = trainer.loss_spec
        loss_text = loss.label or loss.name
        if config.loss_params:
            loss_text += f" ({_format_params(config.loss_params)})"
        rows["loss"].setText(loss_text)
        rows["lr"].setText(f"{config.lr:g}")
        rows["batch_size"].setText(str(config.batch_size))
        rows["seed"].setText(str(trainer.seed))
        rows["data"].setText(
            f"{'shuffled each epoch' if config.shuffle else 'in order'}, device {trainer.device}"
        )
        schedule = trainer.scheduler_spec
        schedule_text = schedule.label or schedule.name
        if trainer.scheduler_params:
            schedule_text += f" ({_format_params(trainer.scheduler_params)})"
        rows["schedule"].setText(schedule_text)
        from fmnist_gui.training.schedule import live_params

        self.set_live_params(live_params(spec))
        self.show_live_values(current_values(trainer))
        self.show_epochs(trainer)
        self.problem.setText(problem)
        self.problem.setVisible(bool(problem))

    def show_epochs(self, trainer: Trainer) -> None:
        """Epochs done and the model's target (kept in step with its config)."""
        self.epochs_done.setText(f"{trainer.epochs_done} of")
        self.epochs_target.blockSignals(True)
        self.epochs_target.setValue(trainer.config.epochs)
        self.epochs_target.blockSignals(False)


def current_values(trainer: Trainer) -> dict[str, Any]:
    """The live-changeable values the model's optimizer holds now (its first param group)."""
    from fmnist_gui.training.schedule import live_params

    try:
        group = trainer.optimizer.param_groups[0]
    except (AttributeError, IndexError):
        return {}
    return {name: group[name] for name in live_params(trainer.optimizer_spec) if name in group}
