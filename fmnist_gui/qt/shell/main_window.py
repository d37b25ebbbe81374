"""The main window: settings on the left, tabs of plots in the centre, the log below.

Extension points (for the checkpoint, plugin and insight features):

``self.actions: dict[str, QAction]``
    Every command, by name: ``start``, ``pause``, ``stop``, ``reset``, ``open``,
    ``save``, ``save_as``, ``quit``, ``about``. Which are enabled is decided in
    one place, ``update_actions()``, from ``ACTION_STATES`` and the current
    state. ``open``/``save``/``save_as`` exist but are listed in
    ``self.unavailable`` until a feature wires them: connect
    ``actions["save"].triggered``, then ``window.unavailable.discard("save")``
    and call ``window.update_actions()``.
``self.menus: dict[str, QMenu]``
    ``file``, ``training``, ``plugins`` (left empty for the plugin manager),
    ``help``.
``self.tabs: QTabWidget``
    The centre; the "Training" tab comes first. Add views with
    ``window.tabs.addTab(widget, "Predictions")``.
``state_changed = Signal(str)``
    Emitted with ``"loading"``, ``"idle"``, ``"running"``, ``"paused"`` or
    ``"stopping"``; ``self.state`` holds the current one.
``trainer_changed = Signal(object)`` / ``epoch_finished = Signal(object)``
    A new live ``Trainer`` (or ``None`` after Reset); each ``EpochEnd``.
``self.trainer``, ``self.data``, ``self.plugins``
    The live ``Trainer`` (``None`` before the first Start), the loaded
    ``FashionMNISTData`` and the ``PluginHost``.
``self.driver``
    The running job's ``RunDriver`` (``None`` while idle): ask it for a
    snapshot (``request_snapshot()``) while training runs.
``adopt_trainer(trainer)``
    Replace the live trainer, e.g. after loading a checkpoint: the plots,
    the form and the log follow it. Only while idle.
``mark_saved()`` / ``self.dirty``
    Training since the last save; Reset and Quit ask first when it is set.
``set_plugins(host)``
    Install a rebuilt ``PluginHost`` (after enabling or adding plugins).

Training runs in a ``TrainingWorker`` in its own ``QThread`` (see ``worker.py``);
the plots and the progress are pulled by a frame timer, not pushed per batch.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QFont, QKeySequence
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from fmnist_gui import __version__
from fmnist_gui.qt.features.training.control_panel import ControlPanel
from fmnist_gui.qt.infra.pacing import FramePacer
from fmnist_gui.qt.infra.worker import FunctionWorker, Job, TrainingWorker, load_backend
from fmnist_gui.system.openmp import release_thread_pool

# Which actions each state allows. ``update_actions`` is the only code that
# enables or disables them; tests check this table against the window.
ALWAYS = frozenset({"quit", "about"})
# Saving while training is allowed: the training thread takes the snapshot at a
# batch boundary (fmnist_gui.qt.features.checkpoints.actions).
_SAVING = frozenset({"save", "save_as", "export_weights"})
ACTION_STATES: dict[str, frozenset[str]] = {
    "loading": ALWAYS,
    "idle": ALWAYS | _SAVING | {"start", "reset", "open", "open_recent", "import_weights"},
    "running": ALWAYS | _SAVING | {"pause", "stop"},
    "paused": ALWAYS | _SAVING | {"pause", "stop"},
    "stopping": ALWAYS,
}
STATES = tuple(ACTION_STATES)
# The frame timer's rate follows what a frame costs (see pacing.py): every frame's
# painting holds the GIL that the training thread needs (benchmarks/bench_gui.py).
PAUSE_TIP = "Pause training; press again to resume"
TEXT_SECONDS = 0.5  # progress texts twice a second: a changed label re-lays out the panel
# While training, a thread that wants the GIL back (the worker, after each torch op)
# waits at most this long for the GUI thread to hand it over (CPython's default: 5 ms).
TRAINING_SWITCH_INTERVAL = 0.0005
SETTINGS_ORG = SETTINGS_APP = "fmnist-gui"


def make_settings() -> QSettings:
    """The app's settings (organization and application "fmnist-gui", native format)."""
    return QSettings(SETTINGS_ORG, SETTINGS_APP)


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressPanel(QGroupBox):
    """Epoch and run progress bars, elapsed time, ETA, samples/s and learning rate."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Progress", parent)
        self.epoch_bar = QProgressBar()
        self.epoch_bar.setObjectName("epoch_progress")
        self.run_bar = QProgressBar()
        self.run_bar.setObjectName("run_progress")
        for bar in (self.epoch_bar, self.run_bar):
            bar.setRange(0, 1000)
            bar.setValue(0)
            bar.setTextVisible(True)
        self.epoch_bar.setFormat("Epoch –")
        self.run_bar.setFormat("Run –")
        self.elapsed = QLabel("–")
        self.eta = QLabel("–")
        self.speed = QLabel("–")
        self.lr = QLabel("–")
        form = QFormLayout(self)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.addRow("Epoch:", self.epoch_bar)
        form.addRow("Run:", self.run_bar)
        form.addRow("Elapsed:", self.elapsed)
        form.addRow("Remaining:", self.eta)
        form.addRow("Speed:", self.speed)
        form.addRow("Learning rate:", self.lr)

    def show_position(
        self, epoch: int, batch: int, num_batches: int, epochs_done: int, total_epochs: int
    ) -> None:
        """``batch`` batches of epoch ``epoch`` (1-based) are done."""
        num_batches = max(num_batches, 1)
        total = max(total_epochs, 1) * num_batches
        done = epochs_done * num_batches + (batch if epoch > epochs_done else 0)
        self._set_bar(
            self.epoch_bar,
            int(1000 * batch / num_batches),
            f"{epoch}: {batch}/{num_batches} batches",
        )
        self._set_bar(
            self.run_bar,
            int(1000 * min(done, total) / total),
            f"{epochs_done}/{total_epochs} epochs ({100 * done / total:.0f}%)",
        )

    @staticmethod
    def _set_bar(bar: QProgressBar, value: int, text: str) -> None:
        # QProgressBar.setValue repaints at once, synchronously (a round trip to
        # the display server, ~1 ms each); with updates off, the change is drawn
        # with the rest of the window in the next paint instead.
        bar.setUpdatesEnabled(False)
        bar.setValue(value)
        bar.setFormat(text)
        bar.setUpdatesEnabled(True)


class MainWindow(QMainWindow):
    """The app's window. See the module docstring for the extension points."""

    state_changed = Signal(str)
    trainer_changed = Signal(object)
    epoch_finished = Signal(object)
    # The worker's throttled BatchEnd heartbeat (every ``batch_signal_interval`` s).
    batch_progress = Signal(object)
    backend_ready = Signal()
    batch_signal_interval = 0.1

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        plugins: Any = None,
        plugin_dirs: list[Path] | None = None,
        settings: QSettings | None = None,
    ) -> None:
        super().__init__()
        from fmnist_gui.system.paths import default_data_root

        self.settings = settings if settings is not None else make_settings()
        # --data-dir wins; otherwise the folder the user chose last time; else the default.
        remembered = self.settings.value("folders/data_dir", "")
        self.data_dir = Path(data_dir or remembered or default_data_root())
        self.plugin_dirs = plugin_dirs
        self.plugins: Any = plugins
        self.data: Any = None
        self.data_error = ""
        self.trainer: Any = None
        self.state = "loading"
        self.dirty = False
        self.unavailable: set[str] = {"open", "save", "save_as"}
        self.training_blockers: list[Callable[[], str]] = []  # see training_blocked()
        self.actions: dict[str, QAction] = {}
        self.menus: dict[str, QMenu] = {}
        self.plots: Any = None  # TrainingPlots, built once pyqtgraph is imported
        self.job: Job | None = None
        self.worker: TrainingWorker | None = None
        # The running job's RunDriver: pause, resume, stop and snapshots go through it.
        self.driver: Any = None
        self._loader: Job | None = None
        self._run_end: Any = None
        self._close_requested = False
        self._run_started = 0.0
        self._run_elapsed = 0.0
        self._run_first_step = 0
        self._last_status_step: Any = None
        self._last_text_time = 0.0
        self._saved_switch_interval = sys.getswitchinterval()

        self.setWindowTitle("Fashion-MNIST Trainer")
        self._build_actions()
        self._build_menus()
        self._build_central()
        self._build_status_bar()
        self.frame_timer = QTimer(self)
        self.frame_timer.timeout.connect(self.refresh)
        self.pacer = FramePacer(self.frame_timer)
        self._restore_geometry()
        self.update_actions()
        from fmnist_gui.qt.features.insight.controller import install as install_insight

        install_insight(self)  # Predictions, Confusion, Compare and Runs tabs (issue 6)
        from fmnist_gui.qt.features.plugins.dialogs import install as install_plugin_menu

        install_plugin_menu(self)  # Plugins menu: manage, install from file/package (issue 5)
        from fmnist_gui.qt.features.checkpoints.actions import install as install_checkpoints

        install_checkpoints(self)  # File: Open/Save/Export/Import, autosave (issue 4)

    # ----- construction -----------------------------------------------------------
    def _build_actions(self) -> None:
        def add(
            name: str, text: str, slot: Callable | None, shortcut=None, tip: str = ""
        ) -> QAction:
            action = QAction(text, self)
            action.setObjectName(f"action_{name}")
            if shortcut is not None:
                action.setShortcut(QKeySequence(shortcut))
            if tip:
                action.setStatusTip(tip)
                action.setToolTip(
                    tip + (f" ({action.shortcut().toString()})" if shortcut is not None else "")
                )
            if slot is not None:
                action.triggered.connect(slot)
            self.actions[name] = action
            return action

        add("start", "&Start", self.start, "F5", "Start or continue training")
        add("pause", "&Pause", self.toggle_pause, "F6", PAUSE_TIP)
        add(
            "stop",
            "S&top",
            self.stop,
            "Shift+F5",
            "Stop after the current batch; Start continues the same model",
        )
        add(
            "reset",
            "&Reset",
            self.reset,
            None,
            "Forget the model and the plots; the next Start begins with new weights",
        )
        add("open", "&Open Checkpoint…", None, "Ctrl+O", "Load a saved model and its history")
        add("save", "&Save", None, "Ctrl+S", "Save a checkpoint")
        add("save_as", "Save &As…", None, "Ctrl+Shift+S", "Save a checkpoint under a new name")
        add("quit", "&Quit", self.close, "Ctrl+Q", "Quit the application")
        add("about", "&About", self.about, None, "Versions of the app, torch, Qt and the plugins")
        self.actions["quit"].setMenuRole(QAction.MenuRole.QuitRole)
        self.actions["about"].setMenuRole(QAction.MenuRole.AboutRole)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = self.menus["file"] = bar.addMenu("&File")
        for name in ("open", "save", "save_as"):
            file_menu.addAction(self.actions[name])
        file_menu.addSeparator()
        file_menu.addAction(self.actions["quit"])
        training = self.menus["training"] = bar.addMenu("&Training")
        for name in ("start", "pause", "stop"):
            training.addAction(self.actions[name])
        training.addSeparator()
        training.addAction(self.actions["reset"])
        self.menus["plugins"] = bar.addMenu("&Plugins")
        help_menu = self.menus["help"] = bar.addMenu("&Help")
        help_menu.addAction(self.actions["about"])

        toolbar = QToolBar("Training")
        toolbar.setObjectName("training_toolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for name in ("start", "pause", "stop", "reset"):
            toolbar.addAction(self.actions[name])
        self.addToolBar(toolbar)
        self.toolbar = toolbar

    def _build_central(self) -> None:
        self.panel = ControlPanel()
        self.panel.edited.connect(self._on_form_edited)
        self.progress = ProgressPanel()
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(6, 6, 0, 6)
        side_layout.addWidget(self.panel, 1)
        side_layout.addWidget(self.progress)

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        # The Training tab shows a placeholder until pyqtgraph is imported.
        self.training_tab = QStackedWidget()
        placeholder = QLabel("Loading PyTorch and the plugins…")
        placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        placeholder.setEnabled(False)
        self.training_tab.addWidget(placeholder)
        self.tabs.addTab(self.training_tab, "Training")

        self.log = QPlainTextEdit()
        self.log.setObjectName("log")
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(20_000)
        font = QFont("monospace")
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.log.setFont(font)
        self.log.setPlaceholderText("The tutorial's output appears here while training.")

        centre = QSplitter(Qt.Orientation.Vertical)
        centre.addWidget(self.tabs)
        centre.addWidget(self.log)
        centre.setStretchFactor(0, 4)
        centre.setStretchFactor(1, 1)
        centre.setSizes([560, 150])
        self.centre_splitter = centre

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(side)
        splitter.addWidget(centre)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([345, 935])
        splitter.setChildrenCollapsible(False)
        self.main_splitter = splitter
        self.setCentralWidget(splitter)

    def _build_status_bar(self) -> None:
        self.model_label = QLabel("No model yet")
        self.model_label.setObjectName("model_label")
        self.statusBar().addPermanentWidget(self.model_label)
        self.statusBar().showMessage("Starting…")

    # ----- start-up: the window shows first, then the slow parts load ---------------
    def start_loading(self) -> None:
        """Import pyqtgraph here and torch/plugins/data in a worker; call after ``show()``."""
        if self.plots is None:
            self.statusBar().showMessage("Loading plots…")
            from fmnist_gui.qt.features.training.plots import TrainingPlots

            self.plots = TrainingPlots()
            self.plots.setObjectName("training_plots")
            self._restore_plot_settings()
            self.training_tab.addWidget(self.plots)
            self.training_tab.setCurrentWidget(self.plots)
        self.statusBar().showMessage("Loading PyTorch, the plugins and the dataset…")
        worker = FunctionWorker(load_backend, self.data_dir, self.plugin_dirs, self.plugins)
        worker.returned.connect(self._on_backend_loaded)
        worker.errored.connect(self._on_backend_failed)
        self._loader = Job(worker, self)
        self._loader.done.connect(self._on_loader_done)
        self._loader.start()

    @Slot(object)
    def _on_backend_loaded(self, result: dict) -> None:
        self.set_plugins(result["plugins"])
        self.data, self.data_error = result["data"], result["data_error"]

    @Slot(str, str)
    def _on_backend_failed(self, message: str, details: str) -> None:
        self.append_log(details)
        QMessageBox.critical(
            self, "Start-up failed", f"Could not load PyTorch or the plugins:\n\n{message}"
        )

    @Slot()
    def _on_loader_done(self) -> None:
        self._loader = None
        if self._close_requested:
            self.close()
            return
        self.set_state("idle")
        if self.data is not None:
            n = len(self.data.train)
            self.statusBar().showMessage(
                f"Ready: {n:,} training images from {self.data_dir}. Press F5 to train."
            )
        else:
            self.statusBar().showMessage(f"Fashion-MNIST not found in {self.data_dir}.")
        self.backend_ready.emit()
        errors = getattr(self.plugins, "errors", [])
        for record in errors:
            self.append_log(f"Plugin {record.name} failed to load: {record.error}")

    def set_plugins(self, plugins: Any) -> None:
        """Use ``plugins`` (a ``PluginHost``) for the forms and the next new model."""
        self.plugins = plugins
        self.panel.set_plugins(plugins)
        self.panel.restore_settings(self.settings)
        self._lock_form()

    def ensure_data(self) -> bool:
        """True when the dataset is loaded; otherwise offer the ways to get it."""
        if self.data is not None:
            return True
        from fmnist_gui.qt.features.data.data_dialog import DataDialog
        from fmnist_gui.training.data import DataError, load_dataset

        dialog = DataDialog(self.data_dir, self.data_error, self)
        if dialog.exec() != DataDialog.DialogCode.Accepted:
            self.statusBar().showMessage("No dataset: training needs Fashion-MNIST.")
            return False
        try:
            data = load_dataset(dialog.root, allow_download=False)
        except DataError as exc:
            self.data_error = str(exc)
            QMessageBox.warning(self, "Dataset unusable", str(exc))
            return False
        self.data, self.data_dir, self.data_error = data, dialog.root, ""
        self.settings.setValue("folders/data_dir", str(dialog.root))
        self.statusBar().showMessage(f"Dataset ready in {dialog.root}.")
        return True

    # ----- the state machine ------------------------------------------------------
    def set_state(self, state: str) -> None:
        if state not in ACTION_STATES:
            raise ValueError(f"unknown state {state!r}")
        changed = state != self.state
        self.state = state
        self.update_actions()
        if changed:
            self.state_changed.emit(state)

    def update_actions(self) -> None:
        """Enable exactly the actions ``ACTION_STATES`` allows in the current state."""
        allowed = ACTION_STATES[self.state]
        for name, action in self.actions.items():
            action.setEnabled(name in allowed and name not in self.unavailable)
        paused = self.state == "paused"
        self.actions["pause"].setText("&Resume" if paused else "&Pause")
        continuing = (
            self.trainer is not None
            and self.trainer.global_step > 0
            and (
                not self.trainer.finished
                or self.panel.epochs_spin.value() > self.trainer.epochs_done
            )
        )
        self.actions["start"].setText("&Continue" if continuing else "&Start")
        self.actions["start"].setStatusTip(
            "Continue training the same model" if continuing else "Start training a new model"
        )
        blocked = self.training_blocked()
        if blocked:
            self.actions["start"].setEnabled(False)
            self.actions["start"].setStatusTip(blocked)
            if paused:  # Resume would train too
                self.actions["pause"].setEnabled(False)
                self.actions["pause"].setStatusTip(blocked)
        else:
            self.actions["pause"].setStatusTip(PAUSE_TIP)
        self._lock_form()

    def training_blocked(self) -> str:
        """Why training may not start or resume now ("" when it may), e.g. a race runs.

        Asked afresh each time from ``training_blockers`` (callables returning a
        reason or ""), so a block ends when its cause does, not when someone
        remembers to lift it.
        """
        for blocker in self.training_blockers:
            reason = blocker()
            if reason:
                return reason
        return ""

    def _lock_form(self) -> None:
        busy = self.state != "idle"
        has_model = self.trainer is not None
        self.panel.set_locked(busy or has_model, allow_epochs=not busy)

    # ----- training commands ------------------------------------------------------
    @Slot()
    def start(self) -> None:
        """Start a new model, or continue the live one where it stopped."""
        if self.state != "idle" or self.job is not None:
            return
        blocked = self.training_blocked()
        if blocked:
            self.statusBar().showMessage(blocked, 8000)
            return
        if not self.ensure_data():
            return
        if self.trainer is not None and self.trainer.finished:
            wanted = self.panel.epochs_spin.value()
            if wanted <= self.trainer.epochs_done:
                self.statusBar().showMessage(
                    f"This model has finished its {self.trainer.epochs_done} epochs: raise "
                    "Epochs to train it further, or Reset to start a new model."
                )
                self.panel.show_error(
                    "epochs",
                    "the model has done "
                    f"{self.trainer.epochs_done} epochs; raise Epochs to "
                    "continue or press Reset for a new model",
                )
                return
        if self.trainer is None:
            trainer = self._new_trainer()
            if trainer is None:
                return
            self.trainer = trainer
            self.plots.clear() if self.plots is not None else None
            self.append_log(
                f"New model: {trainer.optimizer_spec.label} lr={trainer.config.lr:g}"
                f", batch size {trainer.config.batch_size}, seed {trainer.seed}, "
                f"device {trainer.device}"
            )
            self.trainer_changed.emit(trainer)
        else:
            t = self.trainer
            # Epochs is the total for this model; it may be raised (or lowered) between runs,
            # but never below the epoch under way.
            t.config.epochs = max(
                self.panel.epochs_spin.value(), t.epochs_done + (1 if t.batch_in_epoch else 0)
            )
            self.append_log(
                f"Continuing the same model from epoch {t.epochs_done + 1}, batch "
                f"{t.batch_in_epoch} (step {t.global_step})."
            )
            self.statusBar().showMessage("Continuing the same model where it stopped.")
        self._launch()

    def _new_trainer(self) -> Any:
        from fmnist_gui.plugins.boundary import PluginFailure
        from fmnist_gui.plugins.host import UnknownPluginError
        from fmnist_gui.plugins.specs import ParamError
        from fmnist_gui.training.config import ConfigError
        from fmnist_gui.training.trainer import Trainer

        config, errors = self.panel.collect()
        if config is None:
            self.statusBar().showMessage("Cannot start: " + errors[0].message)
            return None
        try:
            return Trainer(config, self.data, self.plugins)
        except (ConfigError, ParamError) as exc:
            self.panel.show_error(
                "epochs" if isinstance(exc, ConfigError) else "optimizer", str(exc)
            )
            self.statusBar().showMessage(f"Cannot start: {exc}")
        except (UnknownPluginError, PluginFailure) as exc:
            self.panel.show_error("optimizer", str(exc))
            QMessageBox.critical(self, "Cannot start training", str(exc))
        except Exception as exc:  # noqa: BLE001 - a plugin's factory can raise anything
            QMessageBox.critical(self, "Cannot start training", f"{type(exc).__name__}: {exc}")
        return None

    def _launch(self) -> None:
        trainer = self.trainer
        worker = TrainingWorker(trainer, self.batch_signal_interval)
        worker.batch.connect(self.batch_progress)
        worker.log.connect(self.append_log)
        worker.epoch.connect(self._on_epoch)
        worker.errored.connect(self._on_worker_error)
        worker.finished.connect(self._on_run_end)
        self.worker = worker
        self.driver = worker.driver
        self._run_end = None
        self._run_started = time.monotonic()
        self._run_elapsed = 0.0
        self._run_first_step = trainer.global_step
        self.job = Job(worker, self)
        self.job.done.connect(self._on_job_done)
        self._saved_switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(TRAINING_SWITCH_INTERVAL)
        self.dirty = True
        self.set_state("running")
        self.statusBar().showMessage("Training…")
        self.job.start()
        self.pacer.restart()
        self.frame_timer.start()

    @Slot()
    def toggle_pause(self) -> None:
        if self.trainer is None:
            return
        blocked = self.training_blocked()
        if self.state == "paused" and blocked:
            self.statusBar().showMessage(blocked, 8000)
            return
        if self.state == "running":
            self.driver.pause()
            self._run_elapsed += time.monotonic() - self._run_started
            self.set_state("paused")
            self.statusBar().showMessage("Paused. Resume continues with the next batch.")
        elif self.state == "paused":
            self.driver.resume()
            self._run_started = time.monotonic()
            self.set_state("running")
            self.statusBar().showMessage("Training…")

    @Slot()
    def stop(self) -> None:
        if self.state not in ("running", "paused") or self.trainer is None:
            return
        if self.state == "running":
            self._run_elapsed += time.monotonic() - self._run_started
        self._request_stop()
        self.set_state("stopping")
        self.statusBar().showMessage("Stopping after the current batch…")

    @Slot()
    def reset(self) -> None:
        """New weights at the next Start; the plots and the log are cleared."""
        if self.state != "idle":
            return
        if self.dirty and self.trainer is not None:
            answer = QMessageBox.question(
                self,
                "Reset the model?",
                "The trained model has not been saved. Reset discards it and its plots; "
                "the next Start begins with new weights.",
                QMessageBox.StandardButton.Reset | QMessageBox.StandardButton.Cancel,
                QMessageBox.StandardButton.Cancel,
            )
            if answer != QMessageBox.StandardButton.Reset:
                return
        self.trainer = None
        self.dirty = False
        if self.plots is not None:
            self.plots.clear()
        self.log.clear()
        self._show_progress_idle()
        self.model_label.setText("No model yet")
        self.trainer_changed.emit(None)
        self.update_actions()
        self.statusBar().showMessage("Reset: the next Start trains a new model.")

    def adopt_trainer(self, trainer: Any, *, saved: bool = True) -> None:
        """Make ``trainer`` the live model (after a checkpoint load); only while idle."""
        if self.state != "idle":
            raise RuntimeError("adopt_trainer() needs the window to be idle")
        self.trainer = trainer
        self.dirty = not saved
        self.panel.set_config(trainer.config)
        if self.plots is not None:
            self.plots.clear()
            self.plots.sync(
                trainer.history.batch_losses,
                trainer.history.epochs,
                trainer.train_loader and len(trainer.train_loader),
            )
        self._show_trainer_position()
        self.append_log(
            f"Loaded a model at epoch {trainer.epochs_done}, batch "
            f"{trainer.batch_in_epoch} (step {trainer.global_step}); "
            "Start continues it."
        )
        self.trainer_changed.emit(trainer)
        self.update_actions()

    def mark_saved(self) -> None:
        self.dirty = False

    # ----- worker signals ---------------------------------------------------------
    @Slot(str)
    def append_log(self, text: str) -> None:
        self.log.appendPlainText(text)

    @Slot(object)
    def _on_epoch(self, event: Any) -> None:
        self.refresh()
        self.epoch_finished.emit(event)

    @Slot(str, str)
    def _on_worker_error(self, message: str, details: str) -> None:
        self._run_end = "errored"
        self.append_log(details.rstrip())
        QMessageBox.critical(
            self,
            "Training failed",
            f"Training stopped because of an error:\n\n{message}\n\n"
            "The model is kept as of the last completed batch.",
        )

    @Slot(object)
    def _on_run_end(self, end: Any) -> None:
        if self._run_end == "errored":
            return
        self._run_end = end

    @Slot()
    def _on_job_done(self) -> None:
        # Only now has the thread really ended: a new run may start.
        self.job = None
        self.worker = None
        self.driver = None
        self.frame_timer.stop()
        sys.setswitchinterval(self._saved_switch_interval)
        if self.state == "running":
            self._run_elapsed += time.monotonic() - self._run_started
        self._last_text_time = 0.0  # the last position is shown, whatever the text rate
        self.refresh()
        end, self._run_end = self._run_end, None
        self.set_state("idle")
        if self._close_requested:
            self.close()
            return
        if end is None or end == "errored":
            self.statusBar().showMessage("Training failed; see the log.")
            return
        if end.status == "finished":
            self.statusBar().showMessage(
                f"Finished {self.trainer.epochs_done} epochs. Raise Epochs and Start to train "
                "further, or Reset for a new model."
            )
        elif end.status == "stopped":
            self.append_log(f"Stopped: {end.message}. Start continues the same model.")
            self.statusBar().showMessage(
                "Stopped. Start continues the same model from where it stopped; "
                "Reset begins a new one."
            )
        elif end.status == "diverged":
            self.append_log(f"Diverged: {end.message}")
            QMessageBox.warning(self, "Training diverged", end.message)
            self.statusBar().showMessage("Diverged; see the log.")
        else:
            self.append_log(f"Failed: {end.message}")
            QMessageBox.critical(self, "Training failed", end.message)
            self.statusBar().showMessage("Training failed; see the log.")

    # ----- the frame timer: plots and progress ------------------------------------
    @Slot()
    def refresh(self) -> None:
        """Pull what the worker produced since the last frame and draw it (GUI thread)."""
        trainer = self.trainer
        if trainer is None:
            return
        if self.job is not None:
            self.pacer.frame()
            release_thread_pool()  # after any torch work this thread did: see openmp.py
        worker = self.worker
        last = worker.last_batch if worker is not None else None
        num_batches = last.num_batches if last is not None else len(trainer.train_loader)
        if self.plots is not None:
            self.plots.sync(
                trainer.history.batch_losses,
                trainer.history.epochs,
                num_batches,
                planned_steps=trainer.config.epochs * num_batches,
            )
        now = time.monotonic()
        if now - self._last_text_time >= TEXT_SECONDS or self.state == "idle":
            self._last_text_time = now
            self._show_trainer_position(num_batches)

    def _show_trainer_position(self, num_batches: int | None = None) -> None:
        t = self.trainer
        if t is None:
            return
        num_batches = num_batches or len(t.train_loader)
        step = t.global_step
        # Cheap when nothing moved (paused, or the test loop is running).
        position = (step, t.epochs_done, self.state)
        if position == self._last_status_step:
            return
        self._last_status_step = position
        epoch = t.epochs_done + 1 if t.batch_in_epoch else max(t.epochs_done, 1)
        batch = t.batch_in_epoch if t.batch_in_epoch else (num_batches if t.epochs_done else 0)
        self.progress.show_position(epoch, batch, num_batches, t.epochs_done, t.config.epochs)
        elapsed = self._run_elapsed + (
            time.monotonic() - self._run_started if self.state == "running" else 0.0
        )
        steps = step - self._run_first_step
        remaining = t.config.epochs * num_batches - step
        rate = steps / elapsed if elapsed > 0 and steps > 0 else None
        self.progress.elapsed.setText(format_duration(elapsed))
        self.progress.eta.setText(format_duration(remaining / rate) if rate else "–")
        self.progress.speed.setText(f"{rate * t.config.batch_size:,.0f} samples/s" if rate else "–")
        try:
            self.progress.lr.setText(f"{t.optimizer.param_groups[0]['lr']:g}")
        except (AttributeError, IndexError, KeyError, TypeError):
            self.progress.lr.setText("–")
        self.model_label.setText(
            f"Model: epoch {t.epochs_done}/{t.config.epochs}, "
            f"step {step} · {t.optimizer_spec.label} · seed {t.seed}"
        )

    def _show_progress_idle(self) -> None:
        self.progress.epoch_bar.setValue(0)
        self.progress.run_bar.setValue(0)
        self.progress.epoch_bar.setFormat("Epoch –")
        self.progress.run_bar.setFormat("Run –")
        for label in (
            self.progress.elapsed,
            self.progress.eta,
            self.progress.speed,
            self.progress.lr,
        ):
            label.setText("–")
        self._last_status_step = None

    @Slot()
    def _on_form_edited(self) -> None:
        if self.state == "idle":
            self.update_actions()

    # ----- help -------------------------------------------------------------------
    @Slot()
    def about(self) -> None:
        QMessageBox.about(self, "About Fashion-MNIST Trainer", self.about_text())

    def about_text(self) -> str:
        import PySide6
        from PySide6.QtCore import qVersion

        torch_version = "not loaded yet"
        try:
            import torch

            torch_version = torch.__version__
        except ImportError:
            torch_version = "not installed"
        try:
            import pyqtgraph

            pg_version = pyqtgraph.__version__
        except ImportError:
            pg_version = "not installed"
        rows = [
            ("Fashion-MNIST Trainer", __version__),
            ("PyTorch", torch_version),
            ("Qt", qVersion()),
            ("PySide6", PySide6.__version__),
            ("pyqtgraph", pg_version),
        ]
        plugin_rows = []
        for record in getattr(self.plugins, "records", {}).values():
            plugin_rows.append(
                f"<tr><td>{record.name}</td><td>{record.version or '–'}</td>"
                f"<td>{record.source}</td><td>{record.status}</td></tr>"
            )
        table = "".join(f"<tr><td>{a}</td><td>{b}</td></tr>" for a, b in rows)
        plugins = (
            "<p><b>Plugins</b></p><table cellspacing=4><tr><th align=left>Name</th>"
            "<th align=left>Version</th><th align=left>Source</th>"
            "<th align=left>Status</th></tr>" + "".join(plugin_rows) + "</table>"
            if plugin_rows
            else "<p>Plugins: not loaded yet.</p>"
        )
        return (
            "<p>Trains the network of the PyTorch tutorial <i>Optimizing Model "
            "Parameters</i> on Fashion-MNIST.</p>"
            f"<table cellspacing=4>{table}</table>{plugins}"
        )

    # ----- settings and closing ---------------------------------------------------
    def _restore_geometry(self) -> None:
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)
        state = self.settings.value("window/splitter")
        if state is not None:
            self.main_splitter.restoreState(state)

    def _restore_plot_settings(self) -> None:
        try:
            weight = float(self.settings.value("plots/smoothing", self.plots.smoothing))
        except (TypeError, ValueError):
            weight = self.plots.smoothing
        self.plots.set_smoothing(weight)
        self.plots.set_x_mode(str(self.settings.value("plots/x_axis", self.plots.x_mode)))

    def save_settings(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/splitter", self.main_splitter.saveState())
        self.settings.setValue("folders/data_dir", str(self.data_dir))
        if self.plugins is not None:
            self.panel.save_settings(self.settings)
        if self.plots is not None:
            self.settings.setValue("plots/smoothing", self.plots.smoothing)
            self.settings.setValue("plots/x_axis", self.plots.x_mode)
        self.settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        if self.job is not None or self._loader is not None:
            if not self._close_requested and self.job is not None:
                answer = QMessageBox.question(
                    self,
                    "Quit while training?",
                    "Training is running. Stop it and quit? The model has not been saved.",
                    QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                    QMessageBox.StandardButton.No,
                )
                if answer != QMessageBox.StandardButton.Yes:
                    event.ignore()
                    return
            # Stop cooperatively and close once the thread has ended (_on_job_done).
            self._close_requested = True
            self._request_stop()
            if self.state in ("running", "paused"):
                self.set_state("stopping")
            self.statusBar().showMessage("Stopping, then quitting…")
            event.ignore()
            return
        self.frame_timer.stop()
        self.save_settings()
        event.accept()

    def _request_stop(self) -> None:
        if self.driver is not None:
            self.driver.request_stop()

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Stop and join every worker (the app calls this after the event loop ends)."""
        self._request_stop()
        if getattr(self, "insight", None) is not None:
            self.insight.shutdown(timeout_ms)  # the race and prediction threads
        for job in (self.job, self._loader):
            if job is not None:
                job.wait(timeout_ms)
