"""The Current model box: the live model's own settings, read-only.

The live ``Trainer`` is the one source of truth for the model it trains: this
box shows its config (optimizer and hyperparameters, loss, lr, batch size,
seed, shuffle, device, schedule if any, epochs done) and never the form's.
The form below it holds the settings for a *new* model. The only thing that
can be changed here is how many epochs Continue trains the model to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QWidget,
)

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
        self.use_button = QPushButton("Use these settings for a new model")
        self.use_button.setObjectName("use_model_settings")
        self.use_button.setToolTip(
            "Copy this model's settings into the form below (the seed stays random)."
        )
        self.use_button.clicked.connect(self.use_settings)
        self.form.addRow(self.use_button)
        self.show_trainer(None)

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
        schedule = getattr(config, "scheduler", None)
        rows["schedule"].setText(str(schedule) if schedule else "none (constant lr)")
        self.show_epochs(trainer)
        self.problem.setText(problem)
        self.problem.setVisible(bool(problem))

    def show_epochs(self, trainer: Trainer) -> None:
        """Epochs done and the model's target (kept in step with its config)."""
        self.epochs_done.setText(f"{trainer.epochs_done} of")
        self.epochs_target.blockSignals(True)
        self.epochs_target.setValue(trainer.config.epochs)
        self.epochs_target.blockSignals(False)
