"""The session's run list: the Runs tab, the training runs in it, and its place in checkpoints.

``RunsController`` owns the ``RunList`` shared with the Compare tab (built by
the app and handed to both). The main training runs are added as
``trainer_changed`` reports them (``track_trainer()`` adds one by hand) and
follow the trainer's losses, epochs and status. Runs of earlier sessions come
back from ``runs.sqlite`` under the user data folder, and checkpoints keep the
list through ``checkpoint_extra()`` and ``restore_checkpoint_extra()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal, Slot

from fmnist_gui.analysis.runs import RunError, RunList, RunStore
from fmnist_gui.qt.features.training.controller import TrainingController
from fmnist_gui.qt.shell.window import MainWindow
from fmnist_gui.system.paths import user_data_dir

if TYPE_CHECKING:
    from fmnist_gui.qt.features.runs.runs_view import RunsView
    from fmnist_gui.training.events import EpochEnd
    from fmnist_gui.training.trainer import Trainer


def _true_config(trainer: Trainer) -> dict[str, Any]:
    """The trainer's settings as it runs: its current epoch total and the seed it used."""
    config = trainer.config.to_dict()
    config["seed"] = trainer.seed
    return config


class RunsController(QObject):
    """Keeps the run list in step with the live trainer, and builds the Runs tab."""

    # A past run's settings (a TrainConfig.to_dict()) for the training form.
    use_settings_requested = Signal(object)

    runs_view: RunsView  # built by build_view(), once the backend has loaded

    def __init__(self, window: MainWindow, training: TrainingController, runs: RunList) -> None:
        super().__init__(window)
        self.window = window
        self.training = training
        self.runs = runs
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

    def build_view(self, export_targets: Callable[[], list[list[Any]]]) -> RunsView:
        """Build the Runs tab (imports pyqtgraph); once, after the backend loaded.

        ``export_targets`` gives the plots that "Export plots" composes.
        """
        from fmnist_gui.qt.features.runs.runs_view import RunsView

        view = self.runs_view = RunsView(self.runs, plots=export_targets)
        view.setObjectName("runs_view")
        view.message.connect(lambda text: self.window.statusBar().showMessage(text, 8000))
        view.use_settings_requested.connect(self.use_settings_requested)
        self.ready = True
        training = self.training
        training.trainer_changed.connect(self.track_trainer)
        training.epoch_finished.connect(self._on_epoch)
        self.window.state_changed.connect(self._on_state)
        if training.trainer is not None:
            self.track_trainer(training.trainer)
        return view

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

    @Slot(str)
    def _on_state(self, state: str) -> None:
        if state == "running" and self._tracked is not None:
            self._sync_losses()  # a continued run may have a new epoch total
        if state in ("idle", "paused") and self._tracked is not None:
            trainer = self._tracked
            self._sync_losses(
                "finished" if trainer.finished else "paused" if state == "paused" else "stopped"
            )
