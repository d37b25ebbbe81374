"""The insight tabs (Predictions, Confusion, Compare, Runs) and the session's run list.

``InsightController`` is built with the window and imports nothing heavy; its
tabs are built by ``build_views()`` once the backend (torch, plugins, data) has
loaded, so the window still shows at once. Its ``runs`` (a
``fmnist_gui.analysis.runs.RunList``) holds the main training runs (added as
``trainer_changed`` reports them; ``track_trainer()`` adds one by hand) and
every race member; checkpoints keep it through ``checkpoint_extra()`` and
``restore_checkpoint_extra()``.

Predictions are computed from a *copy* of the model's weights, in a short
``FunctionWorker`` job, and only while the Predictions or Confusion tab is on
screen (or on Refresh): the GUI never blocks on 10,000 forward passes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal, Slot

from fmnist_gui.analysis.runs import RunError, RunList, RunStore
from fmnist_gui.qt.features.training.controller import TrainingController
from fmnist_gui.qt.infra.worker import Job
from fmnist_gui.qt.shell.window import MainWindow
from fmnist_gui.system.paths import user_data_dir

if TYPE_CHECKING:
    from fmnist_gui.analysis.insight import Predictions
    from fmnist_gui.qt.features.compare.race_view import RaceView
    from fmnist_gui.qt.features.insight.views import ConfusionView, PredictionsView
    from fmnist_gui.qt.features.runs.runs_view import RunsView
    from fmnist_gui.training.data import Split
    from fmnist_gui.training.events import EpochEnd
    from fmnist_gui.training.trainer import Trainer


def _predict_snapshot(state: dict, split: Split) -> Predictions:
    """Worker-thread side: rebuild the network from copied weights and predict."""
    from fmnist_gui.analysis.insight import predict
    from fmnist_gui.training.model import NeuralNetwork

    model = NeuralNetwork()
    model.load_state_dict(state)
    return predict(model, split)


def _true_config(trainer: Trainer) -> dict[str, Any]:
    """The trainer's settings as it runs: its current epoch total and the seed it used."""
    config = trainer.config.to_dict()
    config["seed"] = trainer.seed
    return config


class InsightController(QObject):
    """Owns the insight views and feeds them from the live trainer and its signals."""

    # A past run's settings (a TrainConfig.to_dict()) for the training form (Runs tab).
    use_settings_requested = Signal(object)

    # Built by build_views(), once the backend has loaded (``ready``).
    predictions_view: PredictionsView
    confusion_view: ConfusionView
    race_view: RaceView
    runs_view: RunsView

    def __init__(self, window: MainWindow, training: TrainingController) -> None:
        super().__init__(window)
        self.window = window
        self.training = training
        self.runs = RunList()
        self.store: RunStore | None = None
        try:
            # Runs of earlier sessions come back, and this session's are kept.
            self.store = RunStore(user_data_dir() / "runs.sqlite")
            self.store.follow(self.runs)
        except RunError as exc:
            window.statusBar().showMessage(f"Runs will not be kept: {exc}", 15000)
        self.ready = False
        self.training_run_id: int | None = None
        self.resume_run_id: int | None = None  # set by restore_checkpoint_extra
        self._tracked: Trainer | None = None  # the Trainer behind training_run_id
        self._seen_losses = 0
        self._prediction_job: Job | None = None
        self._stale = True  # the views lag the model
        self._close_after_race = False
        self._plugins_stale = False
        training.add_blocker(self._race_blocks_training)
        window.closing.connect(self._join_predictions)

    def build_views(self) -> None:
        """Build the tabs (imports pyqtgraph and torch); once, after the backend loaded."""
        if self.ready:
            return
        from fmnist_gui.qt.features.compare.race_view import RaceView
        from fmnist_gui.qt.features.insight.views import (
            ConfusionView,
            PredictionsView,
            connect_drilldown,
        )
        from fmnist_gui.qt.features.runs.runs_view import RunsView

        window, training = self.window, self.training
        self.predictions_view = PredictionsView()
        self.confusion_view = ConfusionView()
        connect_drilldown(self.confusion_view, self.predictions_view)
        self.confusion_view.cell_activated.connect(
            lambda *_: window.tabs.setCurrentWidget(self.predictions_view)
        )
        self.predictions_view.refresh_requested.connect(lambda: self.refresh_predictions(True))
        self.predictions_view.message.connect(
            lambda text: window.statusBar().showMessage(text, 8000)
        )
        self.race_view = RaceView(training.plugins, training.data, self.runs)
        # The host changes in place (a plugin or spec enabled, a package installed):
        # the same object, so only this signal tells the Compare tab to list again.
        window.backend.plugins_changed.connect(self._plugins_changed)
        self.race_view.message.connect(lambda text: window.statusBar().showMessage(text, 8000))
        self.race_view.race_started.connect(lambda _race: window.update_actions())
        self.race_view.race_finished.connect(self._on_race_finished)
        self.runs_view = RunsView(self.runs, plots=self.export_targets)
        self.runs_view.message.connect(lambda text: window.statusBar().showMessage(text, 8000))
        self.runs_view.use_settings_requested.connect(self.use_settings_requested)
        for widget, title, name in (
            (self.predictions_view, "Predictions", "predictions_view"),
            (self.confusion_view, "Confusion", "confusion_view"),
            (self.race_view, "Compare", "race_view"),
            (self.runs_view, "Runs", "runs_view"),
        ):
            widget.setObjectName(name)
            window.tabs.addTab(widget, title)
        self.ready = True
        training.trainer_changed.connect(self.track_trainer)
        training.epoch_finished.connect(self._on_epoch)
        window.state_changed.connect(self._on_state)
        window.tabs.currentChanged.connect(self._on_tab)
        if training.trainer is not None:
            self.track_trainer(training.trainer)

    def _race_blocks_training(self) -> str:
        if self.ready and self.race_view.running:
            return (
                "A race is running in the Compare tab: stop it there or let it finish, then train."
            )
        return ""

    # ----- the run list in checkpoints ------------------------------------------------------
    def checkpoint_extra(self) -> dict[str, Any]:
        """What a checkpoint's ``extra`` keeps of the session's runs (plain data only)."""
        return {"runs": self.runs.to_state(), "current_run": self.training_run_id or 0}

    def restore_checkpoint_extra(self, extra: dict[str, Any]) -> None:
        """Bring back the run list saved by ``checkpoint_extra``; call before adopting the trainer.

        A checkpoint without runs (or with unreadable ones) leaves the list as it is.
        """
        if not isinstance(extra.get("runs"), list):
            return
        try:
            self.runs.load_state(extra["runs"])
        except (KeyError, TypeError, ValueError):
            return
        # The trainer about to be adopted continues the run that was current at save time.
        current = extra.get("current_run")
        self.resume_run_id = current if isinstance(current, int) and current else None

    # ----- the main training run in the run list ------------------------------------------
    @Slot(object)
    def track_trainer(self, trainer: Trainer | None, name: str | None = None) -> int | None:
        """Make ``trainer`` the session's current training run (a new row in Runs)."""
        self._stale = True
        if trainer is None or trainer is self._tracked:
            if trainer is None:
                self._tracked, self.training_run_id = None, None
            return self.training_run_id
        self._tracked = trainer
        resumed, self.resume_run_id = self.resume_run_id, None
        if resumed is not None and any(r.id == resumed for r in self.runs):
            # Opened from a checkpoint whose run list has this training in it already.
            self.training_run_id = resumed
            self._seen_losses = len(trainer.history.batch_losses)
            self.runs.update_config(resumed, _true_config(trainer))
            return resumed
        spec = trainer.optimizer_spec
        label = name or f"Training: {spec.label} lr={trainer.config.lr:g}"
        run = self.runs.add(
            label, _true_config(trainer), "training", steps_per_epoch=len(trainer.train_loader)
        )
        self.training_run_id, self._seen_losses = run.id, 0
        for epoch in trainer.history.epochs:  # e.g. a checkpoint with history
            self.runs.record(run.id, epoch=epoch.as_dict())
        self._sync_losses()
        return run.id

    def _sync_losses(self, status: str | None = None) -> None:
        trainer, run_id = self._tracked, self.training_run_id
        if trainer is None or run_id is None or all(r.id != run_id for r in self.runs):
            return
        # The planned epochs change when a stopped model is continued with another
        # total; the seed is drawn when the form left it empty.
        self.runs.update_config(run_id, _true_config(trainer))
        losses = trainer.history.batch_losses
        new = losses[self._seen_losses :]
        self._seen_losses += len(new)
        self.runs.record(run_id, batch_losses=new, status=status)

    @Slot(object)
    def _on_epoch(self, event: EpochEnd) -> None:
        if self.training.trainer is not self._tracked:
            self.track_trainer(self.training.trainer)
        self._sync_losses()
        if self.training_run_id is not None and any(
            r.id == self.training_run_id for r in self.runs
        ):
            self.runs.record(self.training_run_id, epoch=event.as_dict())
        self._stale = True
        self.refresh_predictions()

    @Slot(str)
    def _on_state(self, state: str) -> None:
        self.race_view.set_blocked(
            "training is running; stop or pause it first"
            if state in ("running", "stopping")
            else ""
        )
        if state == "running" and self._tracked is not None:
            self._sync_losses()  # a continued run may have a new epoch total
        if state in ("idle", "paused") and self._tracked is not None:
            trainer = self._tracked
            self._sync_losses(
                "finished" if trainer.finished else "paused" if state == "paused" else "stopped"
            )
            self._stale = True
            self.refresh_predictions()  # on demand while paused or stopped
        self._sync_backend()

    def _sync_backend(self) -> None:
        """Follow the app's plugin host and data (they can be replaced at any time)."""
        plugins, data = self.training.plugins, self.training.data
        race_view = self.race_view
        changed = plugins is not race_view.plugins or self._plugins_stale
        if plugins is not None and changed and not race_view.running:
            race_view.set_plugins(plugins)
            self._plugins_stale = False
        if data is not self.race_view.data:
            self.race_view.set_data(data)

    @Slot(object)
    def _plugins_changed(self, _plugins: object) -> None:
        self._plugins_stale = True  # a running race keeps its list until it ends
        self._sync_backend()

    @Slot(int)
    def _on_tab(self, index: int) -> None:
        self._sync_backend()
        if self._stale:
            self.refresh_predictions()

    # ----- predictions ----------------------------------------------------------------------
    def insight_visible(self) -> bool:
        if not self.ready:
            return False
        current = self.window.tabs.currentWidget()
        return current is self.predictions_view or current is self.confusion_view

    def refresh_predictions(self, force: bool = False) -> bool:
        """Predict the test set with a copy of the current weights, in a worker thread.

        Only while a view shows it (or ``force``); one job at a time, and a
        request during a job is served once it ends. True when a job started.
        """
        from fmnist_gui.qt.infra.worker import FunctionWorker

        trainer, data = self.training.trainer, self.training.data
        if trainer is None or data is None or not (force or self.insight_visible()):
            return False
        if self._prediction_job is not None:
            self._stale = True
            return False
        self._stale = False
        # A copy, so the worker reads weights that no longer move. While training
        # runs, the copy may straddle one optimizer step (harmless for a
        # picture of the model); while paused or stopped it is exact.
        state = {k: v.detach().to("cpu", copy=True) for k, v in trainer.model.state_dict().items()}
        caption = f"After epoch {trainer.epochs_done}" if trainer.epochs_done else "Untrained"
        worker = FunctionWorker(_predict_snapshot, state, data.test)
        worker.returned.connect(lambda result: self._show_predictions(result, caption))
        worker.errored.connect(
            lambda message, details: self.window.statusBar().showMessage(
                f"Could not compute the predictions: {message}", 8000
            )
        )
        self._prediction_job = Job(worker, self)
        self._prediction_job.done.connect(self._on_prediction_done)
        self._prediction_job.start()
        return True

    def _show_predictions(self, predictions: Predictions, caption: str) -> None:
        data = self.training.data
        if data is None:
            return
        self.predictions_view.set_predictions(predictions, data.test.images)
        self.confusion_view.set_predictions(predictions, caption)

    @Slot()
    def _on_prediction_done(self) -> None:
        self._prediction_job = None
        if self._stale:
            self.refresh_predictions()

    # ----- runs and exports ----------------------------------------------------------------
    def export_targets(self) -> list[list[Any]]:
        """The plots that "Export plots" composes, in rows as on screen.

        The Training tab's plots when it has data, then the Compare tab's overlays
        when a run is shown; none before any run.
        """
        rows: list[list[Any]] = []
        training = self.training.plots
        if training is not None and training.point_count:
            rows += [[training.loss_plot], [training.test_loss_plot, training.accuracy_plot]]
        if self.runs.visible():
            self.race_view.plots.redraw(force=True)
            rows.append([self.race_view.plots.loss_plot, self.race_view.plots.accuracy_plot])
        return rows

    def _on_race_finished(self, _race: object) -> None:
        self.window.update_actions()
        if self._close_after_race:
            self.window.close()

    def busy(self) -> bool:
        """True while a race or a prediction job runs."""
        return (self.ready and self.race_view.running) or self._prediction_job is not None

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Stop the race and join every thread of ours."""
        if self.ready:
            self.race_view.shutdown(timeout_ms)
        if self._prediction_job is not None:
            self._prediction_job.wait(timeout_ms)

    def hold_close(self) -> bool:
        """Closing during a race: stop it cooperatively, close once its thread ended."""
        if not (self.ready and self.race_view.running):
            return False
        self._close_after_race = True
        self.race_view.stop()
        return True

    @Slot()
    def _join_predictions(self) -> None:
        if self._prediction_job is not None:
            self._prediction_job.wait(10_000)  # a short job: join it, never abandon it
