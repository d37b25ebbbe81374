"""The Training feature: the form, the progress, the live plots and the commands that train.

``TrainingController`` owns the live ``Trainer`` (``None`` before the first
Start or after Reset) and runs it in a ``TrainingWorker`` in its own
``QThread``. The worker's ``batch_loss(step, loss)`` reaches the plot buffer
once per batch; the plots are drawn and the progress texts updated by a paced
frame timer, never per batch.

For other features: ``trainer_changed`` (a new live trainer, or ``None``),
``epoch_finished`` (each ``EpochEnd``), ``batch_loss``, ``adopt_trainer()``
(after a checkpoint load), ``dirty``/``mark_saved()``, ``add_blocker()`` (a
reason not to train now, e.g. a race), ``ensure_data()``.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QLabel, QMessageBox, QStackedWidget

from fmnist_gui.qt.features.training.control_panel import ControlPanel
from fmnist_gui.qt.features.training.model_panel import ModelPanel
from fmnist_gui.qt.features.training.progress import ProgressPanel, format_duration
from fmnist_gui.qt.infra.pacing import FramePacer
from fmnist_gui.qt.infra.worker import Job, TrainingWorker
from fmnist_gui.qt.shell.actions import IDLE, TRAINING, Blocker, first_reason
from fmnist_gui.qt.shell.window import MainWindow
from fmnist_gui.system.openmp import release_thread_pool

if TYPE_CHECKING:
    from fmnist_gui.plugins.host import PluginHost
    from fmnist_gui.qt.features.training.lr_finder_dialog import FinderInputs, LRFinderDialog
    from fmnist_gui.qt.features.training.plots import TrainingPlots
    from fmnist_gui.training.config import TrainConfig
    from fmnist_gui.training.data import FashionMNISTData
    from fmnist_gui.training.driver import RunDriver
    from fmnist_gui.training.events import EpochEnd, RunEnd
    from fmnist_gui.training.trainer import Trainer

PAUSE_TIP = "Pause training; press again to resume"
TEXT_SECONDS = 0.5  # progress texts twice a second: a changed label re-lays out the panel
# While training, a thread that wants the GIL back (the worker, after each torch op)
# waits at most this long for the GUI thread to hand it over (CPython's default: 5 ms).
TRAINING_SWITCH_INTERVAL = 0.0005


class TrainingController(QObject):
    """Start, Pause/Resume, Stop and Reset of the window's one live model."""

    trainer_changed = Signal(object)  # the new live Trainer, or None after Reset
    epoch_finished = Signal(object)  # EpochEnd
    batch_loss = Signal(int, float)  # (step, loss) of every batch, in the GUI thread
    _change_failed = Signal(str)  # from the training thread: a queued live change was refused

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.backend = window.backend
        self.trainer: Trainer | None = None
        self.dirty = False  # trained since the last save; Reset asks first
        self.plots: TrainingPlots | None = None  # built once pyqtgraph is imported
        self.job: Job | None = None
        self.worker: TrainingWorker | None = None
        self._blockers: list[Blocker] = []
        self._not_asked_on_quit: list[Blocker] = []  # blockers whose owners ask their own
        self._run_end: RunEnd | str | None = None
        self.divergence_box: QMessageBox | None = None  # open while a rollback is offered
        self._close_requested = False
        self._run_started = 0.0
        self._run_elapsed = 0.0
        self._run_first_step = 0
        self._last_position: tuple[int, int, str] | None = None
        self._last_text_time = 0.0
        self._saved_switch_interval = sys.getswitchinterval()
        self._settings_restored = False
        # Weights imported for a new model: Start trains them with the form's settings.
        self._imported = ""
        self.saved_step = 0  # the live model's step in its newest file
        # Set by the checkpoints feature: saves the live model, True once it is in a file.
        self.save_for_quit: Callable[[], bool] | None = None
        self._save_on_close = False
        self.quit_box: QMessageBox | None = None

        self.panel = ControlPanel()
        self.panel.edited.connect(self._on_form_edited)
        self.model_panel = ModelPanel()
        self.model_panel.epochs_edited.connect(self._on_form_edited)
        self.model_panel.use_settings.connect(self._use_model_settings)
        self.model_panel.apply_live.connect(self.apply_live_change)
        self._change_failed.connect(lambda text: self.model_panel.say_live(text, error=True))
        self._changes_seen = 0  # the live model's recorded changes already logged and marked
        self.lr_finder: LRFinderDialog | None = None  # built at the first Find LR
        self.panel.insert_top(self.model_panel)
        self.progress = ProgressPanel()
        window.add_side_widget(self.panel, 1)
        window.add_side_widget(self.progress)
        # The Training tab shows a placeholder until pyqtgraph is imported.
        self.tab = QStackedWidget()
        placeholder = QLabel("Loading PyTorch and the plugins…")
        placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        placeholder.setEnabled(False)
        self.tab.addWidget(placeholder)
        window.tabs.addTab(self.tab, "Training")
        self.model_label = QLabel("No model yet")
        self.model_label.setObjectName("model_label")
        window.statusBar().addPermanentWidget(self.model_label)
        self._add_actions()

        self.frame_timer = QTimer(self)
        self.frame_timer.timeout.connect(self.refresh)
        self.pacer = FramePacer(self.frame_timer)
        window.actions_updated.connect(self._follow_actions)
        window.closing.connect(self._on_closing)
        self.backend.plugins_changed.connect(self._on_plugins_changed)
        window.update_actions()

    def _add_actions(self) -> None:
        w = self.window
        w.add_action(
            "start",
            "&Start",
            self.start,
            states=IDLE,
            shortcut="F5",
            tip="Start or continue training",
            blocker=lambda: self.continue_blocked() or self.training_blocked(),
        )
        w.add_action(
            "pause",
            "&Pause",
            self.toggle_pause,
            states=TRAINING,
            shortcut="F6",
            tip=PAUSE_TIP,
            # Resume would train too.
            blocker=lambda: self.training_blocked() if w.state == "paused" else "",
        )
        w.add_action(
            "stop",
            "S&top",
            self.stop,
            states=TRAINING,
            shortcut="Shift+F5",
            tip="Stop after the current batch; Continue trains the same model further",
        )
        w.add_action(
            "reset",
            "&Reset",
            self.reset,
            states=IDLE,
            tip="Forget the model and the plots; the next Start begins with new weights",
        )
        for name, text, halve in (
            ("rollback", "Roll &back", False),
            ("rollback_half_lr", "Roll back, &halve lr", True),
        ):
            w.add_action(
                name,
                text,
                functools.partial(self.roll_back, halve_lr=halve),
                states=IDLE,
                tip="Go back to the last good state before the divergence"
                + (", with the learning rate halved" if halve else ""),
                blocker=self._rollback_blocked,
            )
        w.add_action(
            "find_lr",
            "Find &LR…",
            self.find_lr,
            states=IDLE | TRAINING,
            shortcut="Ctrl+L",
            tip="Find a good learning rate with a range test on a copy of the model",
            blocker=lambda: "" if self.engine_inputs() else "Finding an lr needs the dataset.",
        )
        # A diverged model does not train on: Continue waits for a rollback or Reset.
        self.add_blocker(self._diverged_reason, asked_on_quit=False)
        menu = w.menus["training"]
        for name in ("start", "pause", "stop"):
            menu.addAction(w.actions[name])
        menu.addSeparator()
        menu.addAction(w.actions["rollback"])
        menu.addAction(w.actions["rollback_half_lr"])
        menu.addAction(w.actions["reset"])
        menu.addSeparator()
        menu.addAction(w.actions["find_lr"])
        for name in ("start", "pause", "stop", "reset", "find_lr"):
            w.toolbar.addAction(w.actions[name])

    # ----- what the rest of the app reads --------------------------------------------
    @property
    def plugins(self) -> PluginHost | None:
        return self.backend.plugins

    @property
    def data(self) -> FashionMNISTData | None:
        return self.backend.data

    def engine_inputs(self) -> tuple[FashionMNISTData, PluginHost] | None:
        """The dataset and plugin host a new ``Trainer`` needs; None while either is missing."""
        data, plugins = self.backend.data, self.backend.plugins
        return (data, plugins) if data is not None and plugins is not None else None

    @property
    def driver(self) -> RunDriver | None:
        """The running job's ``RunDriver`` (None while idle): snapshots are asked of it."""
        return self.worker.driver if self.worker is not None else None

    @property
    def busy(self) -> bool:
        """True while a training thread exists (running, paused or stopping)."""
        return self.job is not None

    @property
    def close_requested(self) -> bool:
        """True once the user agreed to quit while training (unsaved work included)."""
        return self._close_requested

    def add_blocker(self, blocker: Blocker, *, asked_on_quit: bool = True) -> None:
        """``blocker()`` says why training may not start or resume now ("" when it may).

        Asked afresh each time, so a block ends when its cause does, not when
        someone remembers to lift it. ``asked_on_quit``: quitting while it holds
        asks training's question about that other run (a race); False where the
        blocker's owner asks its own (a sweep).
        """
        self._blockers.append(blocker)
        if not asked_on_quit:
            self._not_asked_on_quit.append(blocker)

    @property
    def imported(self) -> bool:
        """True while the live weights were imported and not trained yet (a new model)."""
        return bool(self._imported) and self.trainer is not None

    def continue_blocked(self) -> str:
        """Why the live model cannot continue ("" when it can, or when there is none).

        A model keeps the optimizer and loss it was created with; when their
        plugin is no longer loaded, it cannot be trained further.
        """
        t, plugins = self.trainer, self.backend.plugins
        if t is None or self.imported or plugins is None:
            return ""
        for kind, spec, table in (
            ("optimizer", t.optimizer_spec, plugins.optimizers),
            ("loss", t.loss_spec, plugins.losses),
        ):
            if f"{kind}:{spec.name}" in getattr(plugins, "disabled_specs", ()):
                return (
                    f"The current model cannot continue: its {kind} {spec.label or spec.name} "
                    f"(plugin {spec.plugin}) is disabled. Enable it again (Plugins → Manage "
                    "plugins…), or Reset to train a new model."
                )
            if spec.name not in table:
                return (
                    f"The current model cannot continue: its {kind} {spec.label or spec.name} "
                    f"(plugin {spec.plugin}) is not loaded. Enable the plugin again "
                    "(Plugins menu), or Reset to train a new model."
                )
        return ""

    def training_blocked(self) -> str:
        """Why training may not start or resume now ("" when it may), e.g. a race runs."""
        return first_reason(self._blockers)

    # ----- start-up -------------------------------------------------------------------
    def build_plots(self) -> None:
        """Import pyqtgraph and show the live plots (after the window's first paint)."""
        if self.plots is not None:
            return
        self.window.statusBar().showMessage("Loading plots…")
        from fmnist_gui.qt.features.training.plots import TrainingPlots

        plots = self.plots = TrainingPlots()
        plots.setObjectName("training_plots")
        settings = self.window.settings
        try:
            weight = float(str(settings.value("plots/smoothing", plots.smoothing)))
        except (TypeError, ValueError):
            weight = plots.smoothing
        plots.set_smoothing(weight)
        plots.set_x_mode(str(settings.value("plots/x_axis", plots.x_mode)))
        self.batch_loss.connect(plots.add_loss)
        self.tab.addWidget(plots)
        self.tab.setCurrentWidget(plots)

    @Slot(object)
    def _on_plugins_changed(self, plugins: PluginHost) -> None:
        # The form lists what is loaded now; what the user typed stays, and the saved
        # settings come back only once, at start-up. The live model is not the form's.
        self.panel.set_plugins(plugins)
        if not self._settings_restored:
            self._settings_restored = True
            self.panel.restore_settings(self.window.settings)
        self._show_model()
        self.window.update_actions()

    def _show_model(self) -> None:
        t = self.trainer
        if self.imported:
            self.model_panel.show_trainer(None, imported=self._imported)
        else:
            self.model_panel.show_trainer(t, problem=self.continue_blocked())
        if t is None or self.imported:
            self.panel.set_note("")
        else:
            self.panel.set_note(
                "Continue trains the current model with its own settings; these are used "
                "by Start after Reset."
            )

    @Slot()
    def _use_model_settings(self) -> None:
        if self.trainer is not None and self.window.state == "idle":
            # A new model gets a new random seed unless the user types one.
            self.panel.set_config(replace(self.trainer.config, seed=None))

    def ensure_data(self) -> bool:
        """True when the dataset is loaded; otherwise offer the ways to get it."""
        backend = self.backend
        if backend.data is not None:
            return True
        from fmnist_gui.qt.features.data.data_dialog import DataDialog
        from fmnist_gui.training.data import DataError, load_dataset

        status = self.window.statusBar()
        dialog = DataDialog(backend.data_dir, backend.data_error, self.window)
        if dialog.exec() != DataDialog.DialogCode.Accepted:
            status.showMessage("No dataset: training needs Fashion-MNIST.")
            return False
        try:
            data = load_dataset(dialog.root, allow_download=False)
        except DataError as exc:
            backend.data_error = str(exc)
            QMessageBox.warning(self.window, "Dataset unusable", str(exc))
            return False
        backend.set_data(data, dialog.root)
        status.showMessage(f"Dataset ready in {dialog.root}.")
        return True

    # ----- the actions' texts and the form follow the state ------------------------------
    @Slot()
    def _follow_actions(self) -> None:
        actions = self.window.actions
        actions["pause"].setText("&Resume" if self.window.state == "paused" else "&Pause")
        trainer = self.trainer
        # A live model that has trained is continued, never silently replaced: a new
        # model needs Reset first.
        continuing = trainer is not None and not self.imported and trainer.global_step > 0
        actions["start"].setText("&Continue" if continuing else "&Start")
        if not continuing:
            tip = "Start training a new model"
        elif (
            trainer is not None
            and trainer.finished
            and (self.model_panel.epochs_target.value() <= trainer.epochs_done)
        ):
            tip = "The model has done all its epochs: raise them (Current model) to continue"
        else:
            tip = "Continue training the current model with its own settings"
        actions.set_tip("start", tip)
        self._lock_form()

    def _lock_form(self) -> None:
        # The form only describes a new model: it is editable whenever nothing trains.
        busy = self.window.state != "idle"
        self.panel.set_locked(busy)
        self.model_panel.epochs_target.setEnabled(not busy and self.trainer is not None)
        self.model_panel.use_button.setEnabled(not busy and self.trainer is not None)
        why = self._live_change_blocked()
        self.model_panel.set_live_enabled(not why, why)

    @Slot()
    def _on_form_edited(self) -> None:
        if self.window.state == "idle":
            self.window.update_actions()

    # ----- live changes -----------------------------------------------------------
    def _live_change_blocked(self) -> str:
        t = self.trainer
        if t is None or self.imported:
            return "No model yet: set the learning rate of a new model in the form."
        if t.diverged is not None:
            return "The model diverged: roll back or Reset first."
        if self.window.state not in ("idle", "running", "paused"):
            return "Wait until the run has stopped."
        return ""

    @Slot(object)
    def apply_live_change(self, values: dict) -> bool:
        """Change the live model's hyperparameters (``{"lr": 0.01}``) at the next batch boundary.

        While a run goes (or is paused) its driver applies them between two
        batches; otherwise they apply at once. Each is recorded with its step,
        logged, marked on the loss plot and saved with the model. False, with
        the reason shown, when they cannot be applied.
        """
        from fmnist_gui.plugins.specs import ParamError

        why = self._live_change_blocked()
        t, driver = self.trainer, self.driver
        if why or t is None:
            self.model_panel.say_live(why, error=True)
            return False
        try:
            if driver is not None:
                driver.request_change(values).add_done_callback(self._report_change)
            else:  # no thread trains it: at a batch boundary now
                t.apply_change(values)
        except (ParamError, RuntimeError) as exc:
            self.model_panel.say_live(str(exc), error=True)
            return False
        self.dirty = True
        self.model_panel.clear_live_fields()
        when = "at the next batch" if driver is not None else "now"
        names = ", ".join(f"{k} {v}" for k, v in values.items())
        self.model_panel.say_live(f"Applied {when}: {names}.")
        if driver is None:
            self.refresh()
        return True

    # ----- Find LR -------------------------------------------------------------------
    def find_lr(self) -> LRFinderDialog:
        """Show the range-test window (one per main window)."""
        from fmnist_gui.qt.features.training.lr_finder_dialog import LRFinderDialog

        if self.lr_finder is None:
            self.lr_finder = LRFinderDialog(
                self._finder_inputs, self._apply_found_lr, self._finder_target, self.window
            )
        self.lr_finder.show()
        self.lr_finder.raise_()
        return self.lr_finder

    def _finder_on_current(self) -> bool:
        # The current model when it exists and may be changed; else the form's new model.
        return self.trainer is not None and not self.imported

    def _finder_target(self) -> str:
        if self._finder_on_current():
            return "the current model"
        return "a new model (the form's settings)"

    def _finder_inputs(self) -> FinderInputs | str:
        from fmnist_gui.qt.features.training.lr_finder_dialog import FinderInputs

        inputs = self.engine_inputs()
        if inputs is None:
            return "the dataset or the plugins are not loaded"
        t = self.trainer
        weights: Any
        config: TrainConfig | None
        if self._finder_on_current() and t is not None:
            config = replace(t.config, seed=t.seed)
            driver = self.driver
            # A training thread owns the weights: it copies them at a batch boundary.
            weights = driver.request_snapshot() if driver is not None else _copy(t)
        else:
            config, errors = self.panel.collect()
            if config is None:
                return errors[0].message
            weights = _copy(t) if t is not None else None  # imported weights
        return FinderInputs(config, *inputs, weights, self._finder_target())

    def _apply_found_lr(self, lr: float) -> str:
        if self._finder_on_current():
            why = self._live_change_blocked()
            if why:
                return why
            if self.apply_live_change({"lr": lr}):
                return ""
            return self.model_panel.live_message.text()
        if self.window.state != "idle":
            return "wait until the run has stopped"
        self.panel.lr_edit.setText(f"{lr:.3g}")
        self.panel.edited.emit()
        return ""

    def _report_change(self, future: Future) -> None:
        # The training thread (or this one) applied it, or refused it: say why.
        exc = future.exception()
        if exc is not None:
            self._change_failed.emit(f"Not applied: {exc}")

    def _sync_changes(self) -> None:
        """Log and mark the live model's changes recorded since the last look (GUI thread)."""
        t = self.trainer
        if t is None:
            return
        changes = t.history.changes  # appended by the training thread; read-only here
        count = len(changes)
        if count == self._changes_seen:
            return
        for change in changes[self._changes_seen : count]:
            self.window.append_log(
                f"Changed {change['name']} to {change['value']} after step {change['step']}."
            )
        self._changes_seen = count
        if self.plots is not None:
            self.plots.show_changes(changes[:count])
        from fmnist_gui.qt.features.training.model_panel import current_values

        self.model_panel.show_live_values(current_values(t))

    def _show_history(self, trainer: Trainer) -> None:
        """Plots, lr curve and change markers of ``trainer``'s whole history."""
        if self.plots is None:
            return
        self.plots.set_history(trainer.history.batch_losses, trainer.history.epochs)
        self.plots.draw(len(trainer.train_loader))
        self.plots.set_lrs(trainer.history.lrs)
        self.plots.clear_marks()
        self.plots.show_changes(trainer.history.changes)

    # ----- training commands ------------------------------------------------------
    @Slot()
    def start(self) -> None:
        """Start a new model, or continue the live one where it stopped."""
        w = self.window
        if w.state != "idle" or self.job is not None:
            return
        blocked = self.training_blocked()
        if blocked:
            w.statusBar().showMessage(blocked, 8000)
            return
        if not self.ensure_data():
            return
        cannot = self.continue_blocked()
        if cannot:
            w.statusBar().showMessage(cannot, 8000)
            return
        if self.trainer is not None and not self.imported and self.trainer.finished:
            wanted = self.model_panel.epochs_target.value()
            if wanted <= self.trainer.epochs_done:
                w.statusBar().showMessage(
                    f"This model has finished its {self.trainer.epochs_done} epochs: raise "
                    "its epochs (Current model) to train it further, or Reset to start a "
                    "new model."
                )
                return
        if self.trainer is None or self.imported:
            weights = self.trainer.model.state_dict() if self.trainer is not None else None
            trainer = self._new_trainer(weights)
            if trainer is None:
                return
            self.trainer = trainer
            self._imported = ""
            self.saved_step = 0
            self._changes_seen = 0
            if self.plots is not None and weights is None:
                self.plots.clear()
                self.plots.clear_marks()
            w.append_log(
                f"New model{' from the imported weights' if weights is not None else ''}: "
                f"{trainer.optimizer_spec.label} lr={trainer.config.lr:g}"
                f", batch size {trainer.config.batch_size}, seed {trainer.seed}, "
                f"device {trainer.device}"
            )
            self.trainer_changed.emit(trainer)
            self._show_model()
        else:
            t = self.trainer
            # The model's own epoch total may be raised (or lowered) between runs, but never
            # below the epoch under way; nothing else of the model changes.
            t.config.epochs = max(
                self.model_panel.epochs_target.value(),
                t.epochs_done + (1 if t.batch_in_epoch else 0),
            )
            w.append_log(f"Continuing the same model {describe_position(t)}.")
            w.statusBar().showMessage("Continuing the same model where it stopped.")
        self._launch(self.trainer)

    def _new_trainer(self, weights: dict | None = None) -> Trainer | None:
        from fmnist_gui.plugins.boundary import PluginFailure
        from fmnist_gui.plugins.host import UnknownPluginError
        from fmnist_gui.plugins.specs import ParamError
        from fmnist_gui.training.config import ConfigError
        from fmnist_gui.training.trainer import Trainer

        config, errors = self.panel.collect()
        if config is None:
            self.window.statusBar().showMessage("Cannot start: " + errors[0].message)
            return None
        inputs = self.engine_inputs()
        if inputs is None:  # start() made sure of the data: the plugins failed to load
            self.window.statusBar().showMessage("Cannot start: the plugins did not load.")
            return None
        try:
            return Trainer(config, *inputs, initial_state=weights)
        except (ConfigError, ParamError) as exc:
            self.panel.show_error(
                "epochs" if isinstance(exc, ConfigError) else "optimizer", str(exc)
            )
            self.window.statusBar().showMessage(f"Cannot start: {exc}")
        except (UnknownPluginError, PluginFailure) as exc:
            self.panel.show_error("optimizer", str(exc))
            QMessageBox.critical(self.window, "Cannot start training", str(exc))
        except Exception as exc:  # noqa: BLE001 - a plugin's factory can raise anything
            QMessageBox.critical(
                self.window, "Cannot start training", f"{type(exc).__name__}: {exc}"
            )
        return None

    def _launch(self, trainer: Trainer) -> None:
        worker = TrainingWorker(trainer)
        worker.batch_loss.connect(self.batch_loss)
        worker.log.connect(self.window.append_log)
        worker.epoch.connect(self._on_epoch)
        worker.errored.connect(self._on_worker_error)
        worker.finished.connect(self._on_run_end)
        self.worker = worker
        self._run_end = None
        self._run_started = time.monotonic()
        self._run_elapsed = 0.0
        self._run_first_step = trainer.global_step
        self._last_position = None
        self.job = Job(worker, self)
        self.job.done.connect(self._on_job_done)
        self._saved_switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(TRAINING_SWITCH_INTERVAL)
        self.dirty = True
        self.window.set_state("running")
        self.window.statusBar().showMessage("Training…")
        self.job.start()
        self.window.scroll_log_to_end()  # the run's lines follow whatever was loaded
        self.pacer.restart()
        self.frame_timer.start()

    @Slot()
    def toggle_pause(self) -> None:
        w = self.window
        if self.trainer is None:
            return
        blocked = self.training_blocked()
        if w.state == "paused" and blocked:
            w.statusBar().showMessage(blocked, 8000)
            return
        driver = self.driver
        if driver is None:
            return
        if w.state == "running":
            driver.pause()
            self._run_elapsed += time.monotonic() - self._run_started
            w.set_state("paused")
            w.statusBar().showMessage("Paused. Resume continues with the next batch.")
        elif w.state == "paused":
            driver.resume()
            self._run_started = time.monotonic()
            w.set_state("running")
            w.statusBar().showMessage("Training…")

    @Slot()
    def stop(self) -> None:
        w = self.window
        if w.state not in ("running", "paused") or self.trainer is None:
            return
        if w.state == "running":
            self._run_elapsed += time.monotonic() - self._run_started
        self._request_stop()
        w.set_state("stopping")
        w.statusBar().showMessage("Stopping after the current batch…")

    @Slot()
    def reset(self) -> None:
        """New weights at the next Start; the plots and the log are cleared."""
        w = self.window
        if w.state != "idle":
            return
        if self.dirty and self.trainer is not None:
            answer = QMessageBox.question(
                w,
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
        if self.divergence_box is not None:
            self.divergence_box.close()
        self._imported = ""
        self.saved_step = 0
        self._changes_seen = 0
        if self.plots is not None:
            self.plots.clear()
            self.plots.clear_marks()
        w.log.clear()
        self._forget_run()
        self._show_model()
        self.model_label.setText("No model yet")
        self.trainer_changed.emit(None)
        w.update_actions()
        w.statusBar().showMessage("Reset: the next Start trains a new model.")

    def _diverged_reason(self) -> str:
        t = self.trainer
        if t is None or t.diverged is None:
            return ""
        if t.sentinel.snapshot is None:
            return "The model diverged: Reset to start a new one."
        return "The model diverged: Roll back (Training menu) or Reset before training on."

    def _rollback_blocked(self) -> str:
        t = self.trainer
        if t is None or t.diverged is None:
            return "Nothing to roll back: the model has not diverged."
        if t.sentinel.snapshot is None:
            return "No good state was kept to roll back to; Reset starts a new model."
        return ""

    def roll_back(self, *, halve_lr: bool = False) -> None:
        """Put a diverged model back to its last good state (only while idle)."""
        t = self.trainer
        if self.window.state != "idle" or t is None or self._rollback_blocked():
            return
        if self.divergence_box is not None:
            self.divergence_box.close()
        message = t.sentinel.roll_back(halve_lr=halve_lr)
        self.dirty = True
        if self.plots is not None:
            self.plots.set_history(t.history.batch_losses, t.history.epochs)
            self.plots.draw(len(t.train_loader))
            self.plots.set_lrs(t.history.lrs)
            self.plots.mark_step(t.global_step, "rollback")
        self.window.append_log(f"{message[0].upper()}{message[1:]}. Continue trains on from there.")
        self._last_position = None
        self._show_trainer_position()
        self.window.update_actions()
        self.window.statusBar().showMessage("Rolled back: Continue trains on from the good state.")

    def _offer_rollback(self, message: str) -> None:
        """Say that training diverged and offer the rollback, without blocking the window."""
        from PySide6.QtWidgets import QMessageBox as Box

        w = self.window
        box = self.divergence_box = Box(Box.Icon.Warning, "Training diverged", message, parent=w)
        box.setObjectName("divergence_box")
        if self.trainer is not None and self.trainer.sentinel.snapshot is not None:
            back = box.addButton("Roll back", Box.ButtonRole.AcceptRole)
            half = box.addButton("Roll back, halve lr", Box.ButtonRole.AcceptRole)
            back.clicked.connect(lambda: self.roll_back())
            half.clicked.connect(lambda: self.roll_back(halve_lr=True))
        box.addButton("Not now", Box.ButtonRole.RejectRole)
        box.finished.connect(box.deleteLater)
        box.destroyed.connect(lambda: setattr(self, "divergence_box", None))
        box.open()  # window-modal but not blocking: closing the window still works

    def adopt_trainer(self, trainer: Trainer, *, saved: bool = True, imported: str = "") -> None:
        """Make ``trainer`` the live model (after a checkpoint load); only while idle.

        The form is left alone: it holds the settings of a *new* model. With
        ``imported`` (a note saying where the weights came from), ``trainer``
        only carries weights: Start builds a new model from them with the form's
        settings.
        """
        if self.window.state != "idle":
            raise RuntimeError("adopt_trainer() needs the window to be idle")
        self.trainer = trainer
        self.dirty = not saved
        self._imported = imported
        self.saved_step = trainer.global_step if saved else 0
        self._forget_run()
        self._show_history(trainer)
        self._changes_seen = len(trainer.history.changes)  # in the file: not logged again
        self._show_trainer_position()
        self._show_model()
        if not imported:
            self.window.append_log(
                f"Loaded a model {describe_position(trainer)}; Continue trains it further."
            )
        self.window.scroll_log_to_end()
        self.trainer_changed.emit(trainer)
        self.window.update_actions()

    def _forget_run(self) -> None:
        # Elapsed, Remaining and Speed belong to a run of this model, not to the last one.
        self._run_elapsed = 0.0
        self._run_started = time.monotonic()
        self._run_first_step = self.trainer.global_step if self.trainer is not None else 0
        self._last_position = None
        self.progress.clear()

    def mark_saved(self, step: int | None = None) -> None:
        """The model as of ``step`` (default: now) is in a file.

        When that is everything trained so far, Reset and Quit need not ask.
        """
        trainer = self.trainer
        current = trainer.global_step if trainer is not None else 0
        self.saved_step = current if step is None else step
        if self.saved_step >= current:
            self.dirty = False

    @property
    def unsaved_steps(self) -> int:
        """Steps trained since the live model was last saved (or since it began)."""
        trainer = self.trainer
        return max(trainer.global_step - self.saved_step, 0) if trainer is not None else 0

    # ----- worker signals ---------------------------------------------------------
    @Slot(object)
    def _on_epoch(self, event: EpochEnd) -> None:
        if self.plots is not None:
            self.plots.add_epoch(event)
        self.refresh()
        self.epoch_finished.emit(event)

    @Slot(str, str)
    def _on_worker_error(self, message: str, details: str) -> None:
        self._run_end = "errored"
        self.window.append_log(details.rstrip())
        QMessageBox.critical(
            self.window,
            "Training failed",
            f"Training stopped because of an error:\n\n{message}\n\n"
            "The model is kept as of the last completed batch.",
        )

    @Slot(object)
    def _on_run_end(self, end: RunEnd) -> None:
        if self._run_end == "errored":
            return
        self._run_end = end

    @Slot()
    def _on_job_done(self) -> None:
        # Only now has the thread really ended: a new run may start.
        w = self.window
        self.job = None
        self.worker = None
        self.frame_timer.stop()
        sys.setswitchinterval(self._saved_switch_interval)
        if w.state == "running":
            self._run_elapsed += time.monotonic() - self._run_started
        self._last_text_time = 0.0  # the last position is shown, whatever the text rate
        self.refresh()
        end, self._run_end = self._run_end, None
        w.set_state("idle")
        if self._close_requested:
            if self._save_on_close and self.save_for_quit is not None:
                self._save_on_close = False
                if not self.save_for_quit():
                    self._close_requested = False
                    status = w.statusBar()
                    status.showMessage("Not saved, so not quitting: the model is kept.")
                    return
            w.close()
            return
        status = w.statusBar()
        if end is None or isinstance(end, str):
            status.showMessage("Training failed; see the log.")
            return
        if end.status == "finished":
            epochs = self.trainer.epochs_done if self.trainer is not None else 0
            status.showMessage(
                f"Finished {epochs} epochs. Raise the model's epochs and Continue to "
                "train further, or Reset for a new model."
            )
        elif end.status == "stopped":
            w.append_log(f"Stopped: {end.message}. Continue trains the same model further.")
            status.showMessage(
                "Stopped. Continue trains the same model from where it stopped; "
                "Reset begins a new one."
            )
        elif end.status == "diverged":
            w.append_log(end.message)
            if self.plots is not None and self.trainer is not None:
                self.plots.mark_step(self.trainer.global_step, "diverged")
            status.showMessage("Diverged: roll back (Training menu) or Reset.")
            self._offer_rollback(end.message)
        else:
            w.append_log(f"Failed: {end.message}")
            QMessageBox.critical(w, "Training failed", end.message)
            status.showMessage("Training failed; see the log.")

    # ----- the frame timer: plots and progress ------------------------------------
    @Slot()
    def refresh(self) -> None:
        """Draw what arrived since the last frame and show the position (GUI thread)."""
        trainer = self.trainer
        if trainer is None:
            return
        if self.job is not None:
            self.pacer.frame()
            release_thread_pool()  # after any torch work this thread did: see openmp.py
        num_batches = len(trainer.train_loader)
        now = time.monotonic()
        if self.plots is not None:
            self.plots.draw(num_batches, planned_steps=trainer.config.epochs * num_batches)
            self.plots.set_lrs(trainer.history.lrs, now=now if self.job is not None else None)
        self._sync_changes()
        if now - self._last_text_time >= TEXT_SECONDS or self.window.state == "idle":
            self._last_text_time = now
            self._show_trainer_position(num_batches)

    def _show_trainer_position(self, num_batches: int | None = None) -> None:
        t = self.trainer
        if t is None:
            return
        state = self.window.state
        num_batches = num_batches or len(t.train_loader)
        step = t.global_step
        # Cheap when nothing moved (paused, or the test loop is running).
        position = (step, t.epochs_done, state)
        if position == self._last_position:
            return
        self._last_position = position
        epoch = t.epochs_done + 1 if t.batch_in_epoch else max(t.epochs_done, 1)
        batch = t.batch_in_epoch if t.batch_in_epoch else (num_batches if t.epochs_done else 0)
        self.progress.show_position(epoch, batch, num_batches, t.epochs_done, t.config.epochs)
        if not self.imported:
            self.model_panel.show_epochs(t)
            from fmnist_gui.qt.features.training.model_panel import current_values

            self.model_panel.show_live_values(current_values(t))  # a schedule moves the lr
        elapsed = self._run_elapsed + (
            time.monotonic() - self._run_started if state == "running" else 0.0
        )
        steps = step - self._run_first_step
        remaining = t.config.epochs * num_batches - step
        rate = steps / elapsed if elapsed > 0 and steps > 0 else None
        self.progress.elapsed.setText(format_duration(elapsed) if elapsed > 0 else "–")
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

    # ----- closing ------------------------------------------------------------------
    def hold_close(self) -> bool:
        """While training or racing: ask first (non-blocking), then stop and close.

        Training: Save and quit / Quit without saving / Cancel; the run is stopped
        cooperatively and the window closes once the thread ended (after the save,
        for Save and quit). Another run that holds training (a race) is not
        dropped without a question either.
        """
        if self._close_requested:
            return self.job is not None  # then _on_job_done closes again
        if self.job is None and not self._another_run():
            return False
        self._ask_before_quit()
        return True

    def _another_run(self) -> str:
        """Why training is held by work still running elsewhere (a race), or "".

        A diverged model also blocks training, but it is a state, not a run:
        quitting loses nothing of it that the unsaved-training question does not cover.
        """
        return first_reason(b for b in self._blockers if b not in self._not_asked_on_quit)

    def _ask_before_quit(self) -> None:
        if self.quit_box is not None:
            return
        buttons = QMessageBox.StandardButton
        if self.job is None:
            reason = self._another_run()
            text = f"{reason}\n\nQuitting now stops it, and its results are not kept."
            box = QMessageBox(
                QMessageBox.Icon.Question, "Quit now?", text, buttons.Cancel, self.window
            )
            box.addButton("Stop and quit", QMessageBox.ButtonRole.DestructiveRole)
        else:
            steps = self.unsaved_steps
            saved = (
                f"{steps} steps trained since the model was last saved are not saved."
                if steps
                else "Everything trained so far is saved."
            )
            box = QMessageBox(
                QMessageBox.Icon.Question,
                "Quit while training?",
                f"Training is running: quitting stops it after the current batch. {saved}",
                buttons.Save | buttons.Discard | buttons.Cancel,
                self.window,
            )
            box.button(buttons.Save).setText("Save and quit")
            box.button(buttons.Discard).setText("Quit without saving")
            box.setDefaultButton(buttons.Save if steps else buttons.Discard)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.finished.connect(lambda _result: self._on_quit_answer(box))
        self.quit_box = box
        box.open()

    def _on_quit_answer(self, box: QMessageBox) -> None:
        self.quit_box = None
        box.deleteLater()
        clicked = box.clickedButton()
        answer = box.standardButton(clicked)
        if answer == QMessageBox.StandardButton.Cancel or clicked is None:
            return
        self._save_on_close = answer == QMessageBox.StandardButton.Save
        self._close_requested = True
        w = self.window
        if self.job is None:  # a race: its own guard stops it, then closes
            w.close()
            return
        # Closed again by _on_job_done once the thread has ended.
        self._request_stop()
        if w.state in ("running", "paused"):
            if w.state == "running":
                self._run_elapsed += time.monotonic() - self._run_started
            w.set_state("stopping")
        w.statusBar().showMessage("Stopping, then quitting…")

    @Slot()
    def _on_closing(self) -> None:
        self.frame_timer.stop()
        settings = self.window.settings
        if self.plugins is not None:
            self.panel.save_settings(settings)
        if self.plots is not None:
            settings.setValue("plots/smoothing", self.plots.smoothing)
            settings.setValue("plots/x_axis", self.plots.x_mode)

    def _request_stop(self) -> None:
        if self.worker is not None:
            self.worker.driver.request_stop()

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Stop the training and join its thread (the app calls this after the event loop)."""
        if self.lr_finder is not None:
            self.lr_finder.wait(timeout_ms)
        self._request_stop()
        if self.job is not None:
            self.job.wait(timeout_ms)


def _copy(trainer: Trainer) -> dict:
    """A copy of ``trainer``'s weights, taken while no thread trains it."""
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def describe_position(trainer: Trainer) -> str:
    """Where a model stands, numbered one way everywhere: steps and whole epochs done."""
    text = f"after step {trainer.global_step} ({trainer.epochs_done} epochs done"
    if trainer.batch_in_epoch:
        text += f", {trainer.batch_in_epoch} batches into epoch {trainer.epochs_done + 1}"
    return text + ")"
