"""The Sweep tab's controller: runs the engine's worker pool off the GUI thread.

A ``SweepRunner`` in a ``Job``'s thread makes (or opens) the sweep in its
storage, then iterates ``WorkerPool.events()``: trials run in worker processes,
their events come back through the pool's queue, and the runner forwards them
as signals, with the whole ``SweepResults`` re-read from the storage after each
trial starts or ends. The GUI thread only keeps the latest results and draws
them on a paced frame timer (``FramePacer``), as the training plots do.

Stop asks the workers to stop after their current batch; the interrupted
trials are queued again in the study, so Resume (here, after a restart, or
``fmnist-sweep worker`` elsewhere) continues the same sweep. Quitting while a
sweep runs asks first, then stops it the same way and closes once the pool
has ended (``hold_close``).
"""

from __future__ import annotations

import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QFileDialog, QMessageBox

from fmnist_gui.errors import FmnistError
from fmnist_gui.plugins.boundary import describe
from fmnist_gui.qt.features.training.controller import TrainingController
from fmnist_gui.qt.infra.pacing import FramePacer
from fmnist_gui.qt.infra.worker import Job
from fmnist_gui.qt.shell.actions import Blocker, first_reason
from fmnist_gui.qt.shell.window import MainWindow

if TYPE_CHECKING:
    from fmnist_gui.plugins.host import PluginHost
    from fmnist_gui.qt.features.sweep.form import FormError, SweepPlan
    from fmnist_gui.qt.features.sweep.view import SweepView
    from fmnist_gui.sweep.pool import WorkerPool, WorkerSetup
    from fmnist_gui.sweep.results import SweepResults
    from fmnist_gui.sweep.study import Sweep
    from fmnist_gui.training.data import FashionMNISTData


class SweepRunner(QObject):
    """Makes or opens a sweep, then runs a ``WorkerPool`` on it; one run, in a worker thread.

    ``request_stop()`` (any thread) stops the pool after the workers' current
    batch, or before it starts. ``kill()`` is the last resort of a closing app.
    """

    started = Signal()
    prepared = Signal(object, bool)  # the Sweep, and whether it was made just now
    sweep_event = Signal(object)  # every SweepEvent of the pool
    results = Signal(object)  # SweepResults, re-read after each trial starts or ends
    errored = Signal(str, str)  # message, details
    finished = Signal()

    def __init__(
        self,
        plan: SweepPlan,
        plugins: PluginHost,
        data: FashionMNISTData,
        data_dir: Path,
        plugin_dirs: list[Path] | None,
    ) -> None:
        super().__init__()
        self.plan, self.plugins, self.data = plan, plugins, data
        self.data_dir, self.plugin_dirs = data_dir, plugin_dirs
        self._stop = threading.Event()
        self._pool: WorkerPool | None = None

    def request_stop(self) -> None:
        self._stop.set()
        pool = self._pool
        if pool is not None:
            pool.request_stop()

    def kill(self) -> None:
        pool = self._pool
        if pool is not None:
            pool.kill()

    @Slot()
    def run(self) -> None:
        self.started.emit()
        try:
            self._run()
        except FmnistError as exc:
            self.errored.emit(str(exc), "")
        except BaseException as exc:  # noqa: BLE001 - nothing may escape into Qt's loop
            self.errored.emit(describe(exc), traceback.format_exc())
        finally:
            self.plugins = self.data = None  # type: ignore[assignment]
            self.finished.emit()

    def _run(self) -> None:
        import optuna

        from fmnist_gui.sweep.events import TrialEnded, TrialStarted
        from fmnist_gui.sweep.pool import WorkerPool
        from fmnist_gui.sweep.results import collect_results
        from fmnist_gui.sweep.storage import open_storage
        from fmnist_gui.sweep.study import Sweep
        from fmnist_gui.sweep.worker import make_spec

        # The tab says what happens; Optuna's INFO lines would only clutter the terminal.
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        plan = self.plan
        storage = open_storage(plan.storage_url, create_folder=plan.storage_url is None)
        if plan.resume:
            sweep, created = Sweep.open(storage, plan.name), False
        else:
            spec = make_spec(
                self.plugins, self.data, plan.optimizers, tune=plan.tune, **plan.settings
            )
            sweep, created = Sweep.create(storage, plan.name, spec)
        self.prepared.emit(sweep, created)
        self.results.emit(collect_results(sweep))
        if self._stop.is_set():
            return
        pool = WorkerPool(self._setup(sweep), [str(i) for i in range(plan.jobs)])
        self._pool = pool
        if self._stop.is_set():  # asked between the check above and the pool's existence
            pool.request_stop()
        for event in pool.events():
            self.sweep_event.emit(event)
            if isinstance(event, (TrialStarted, TrialEnded)):
                self.results.emit(collect_results(sweep))
        self.results.emit(collect_results(sweep))

    def _setup(self, sweep: Sweep) -> WorkerSetup:
        from fmnist_gui.sweep.pool import WorkerSetup, threads_per_worker
        from fmnist_gui.sweep.storage import default_storage_url, normalize_url

        url = self.plan.storage_url
        return WorkerSetup(
            storage_url=normalize_url(url) if url else default_storage_url(),
            study=sweep.name,
            data_dir=Path(self.data_dir),
            plugin_dirs=tuple(self.plugin_dirs) if self.plugin_dirs is not None else None,
            threads=threads_per_worker(self.plan.jobs),
        )


class SweepController(QObject):
    """Owns the Sweep tab (built once the backend loaded) and the sweep running from it."""

    # The chosen optimizer's best setting (a TrainConfig.to_dict()) for the training form.
    use_settings_requested = Signal(object)
    # A sweep started (True) or ended (False): the app re-checks what it blocks.
    running_changed = Signal(bool)

    view: SweepView

    def __init__(self, window: MainWindow, training: TrainingController) -> None:
        super().__init__(window)
        self.window = window
        self.training = training
        self.ready = False
        self.job: Job | None = None
        self.runner: SweepRunner | None = None
        self.sweep: Sweep | None = None  # the sweep last started or resumed
        self.results: SweepResults | None = None
        self.worker_messages: list[str] = []  # errors and crashes of this run's workers
        self.quit_box: QMessageBox | None = None
        self.quit_button: Any = None
        self._close_requested = False
        self._dirty = False
        self._running: dict[str, str] = {}  # worker -> what it is doing, for the status line
        self.frame_timer = QTimer(self)
        self.frame_timer.timeout.connect(self._frame)
        self.pacer = FramePacer(self.frame_timer)
        window.closing.connect(self._on_closing)
        # A sweep takes every CPU: training waits for it, and it waits for training.
        self._blockers: list[Blocker] = [self._training_blocks_sweep]
        training.add_blocker(self._sweep_blocks_training, asked_on_quit=False)  # asks its own

    # ----- building -------------------------------------------------------------------
    def build_view(self) -> SweepView:
        """Build the tab (imports pyqtgraph and the sweep engine); once, after loading."""
        if self.ready:
            return self.view
        from fmnist_gui.qt.features.sweep.view import SweepView

        self.view = view = SweepView()
        view.setObjectName("sweep_view")
        form = view.form
        settings = self.window.settings
        form.name_edit.setText(str(settings.value("sweep/study", form.name_edit.text())))
        form.storage_edit.setText(str(settings.value("sweep/storage", "")))
        view.start_button.clicked.connect(self.start)
        view.stop_button.clicked.connect(self.stop)
        view.resume_button.clicked.connect(self.resume)
        form.refresh_button.clicked.connect(self.reload_names)
        form.changed.connect(self._on_form_changed)
        view.use_button.clicked.connect(self.use_selected)
        view.csv_button.clicked.connect(self._ask_export_csv)
        view.plots_button.clicked.connect(self._ask_export_plots)
        self.window.backend.plugins_changed.connect(self._on_plugins)
        if self.training.plugins is not None:
            form.set_plugins(self.training.plugins)
        self.ready = True
        self.reload_names()
        return view

    @Slot(object)
    def _on_plugins(self, plugins: PluginHost) -> None:
        if self.job is None:
            self.view.form.set_plugins(plugins)

    def _on_form_changed(self) -> None:
        if self.job is None:
            self.view.show_message("")

    def _show_error(self, text: str) -> None:
        self.view.show_message(text, error=True)
        self.window.statusBar().showMessage(f"Sweep: {text}", 10000)

    # ----- what a sweep and the other CPU-heavy work block ------------------------------
    def add_blocker(self, blocker: Blocker) -> None:
        """``blocker()`` says why a sweep may not start now ("" when it may), e.g. a race."""
        self._blockers.append(blocker)

    def sweep_blocked(self) -> str:
        """Why a sweep may not start or resume now ("" when it may)."""
        return first_reason(self._blockers)

    def _training_blocks_sweep(self) -> str:
        if self.window.state in ("running", "stopping"):
            return "training is running; stop or pause it first (a sweep uses every CPU)"
        return ""

    def _sweep_blocks_training(self) -> str:
        if self.job is not None:
            return (
                "A sweep is running in the Sweep tab: stop it there or let it finish, then train."
            )
        return ""

    # ----- start, stop, resume ----------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.job is not None

    @Slot()
    def start(self) -> bool:
        """Start the sweep set in the form; False (with a message) when it cannot start."""
        from fmnist_gui.qt.features.sweep.form import FormError  # optuna: not before Ready

        try:
            plan = self.view.form.plan()
        except FormError as exc:
            self._refuse(exc)
            return False
        return self._launch(plan)

    @Slot()
    def resume(self) -> bool:
        """Continue the sweep chosen in the Existing list."""
        from fmnist_gui.qt.features.sweep.form import FormError

        try:
            plan = self.view.form.resume_plan()
        except FormError as exc:
            self._refuse(exc)
            return False
        return self._launch(plan)

    def _refuse(self, exc: FormError) -> None:
        self._show_error(f"Cannot start: {exc}")
        if exc.widget is not None:
            exc.widget.setFocus()

    def _launch(self, plan: SweepPlan) -> bool:
        if self.job is not None:
            return False
        blocked = self.sweep_blocked()
        if blocked:
            self._show_error(f"Cannot start: {blocked}")
            return False
        plugins, data = self.training.plugins, self.training.data
        if plugins is None or data is None:
            self._show_error(
                "Cannot start: the dataset is not loaded; choose its folder in File > Data first"
            )
            return False
        backend = self.window.backend
        runner = SweepRunner(plan, plugins, data, backend.data_dir, backend.plugin_dirs)
        runner.prepared.connect(self._on_prepared)
        runner.sweep_event.connect(self._on_event)
        runner.results.connect(self._on_results)
        runner.errored.connect(self._on_errored)
        self.runner, self.worker_messages, self._running = runner, [], {}
        self.sweep = None  # set by _on_prepared once the storage has the sweep
        self.job = Job(runner, self)
        self.job.done.connect(self._on_done)
        self._dirty = False
        self.view.set_running(True)
        what = "Resuming" if plan.resume else "Starting"
        self.view.show_message(f"{what} sweep {plan.name!r}…")
        self.view.status_label.setText(
            f"{what} {plan.jobs} worker process(es): loading PyTorch, the plugins and the data…"
        )
        self.pacer.restart()
        self.frame_timer.start()
        self.job.start()
        self.running_changed.emit(True)
        self.window.update_actions()
        return True

    @Slot()
    def stop(self) -> None:
        """Stop the workers after their current batch (their trials run again on Resume)."""
        if self.runner is None:
            return
        self.runner.request_stop()
        self.view.stop_button.setEnabled(False)
        self.view.show_message("Stopping after the current batch…")

    @Slot(object, bool)
    def _on_prepared(self, sweep: Sweep, created: bool) -> None:
        self.sweep = sweep
        spec = sweep.spec
        self.view.form.name_edit.setText(sweep.name)
        what = "New sweep" if created else "Continuing sweep"
        self.view.show_message(
            f"{what} {sweep.name!r}: {', '.join(spec.optimizers)}; {spec.trials} trials × "
            f"{spec.epochs} epochs each, then {spec.seeds} seeds of the best."
        )
        names = [
            self.view.form.resume_combo.itemText(i)
            for i in range(self.view.form.resume_combo.count())
        ]
        if sweep.name not in names:
            self.view.form.set_sweep_names(sorted([*names, sweep.name]), sweep.name)

    @Slot(object)
    def _on_event(self, event: Any) -> None:
        from fmnist_gui.sweep.events import (
            TrialEnded,
            TrialEpoch,
            TrialStarted,
            WorkerEnded,
            WorkerWaiting,
        )

        if isinstance(event, TrialStarted):
            what = "trial" if event.phase == "tune" else "seed run"
            self._running[event.worker] = (
                f"{event.optimizer} {what} {event.number} (lr {event.lr:.3g})"
            )
        elif isinstance(event, TrialEpoch):
            what = "trial" if event.phase == "tune" else "seed run"
            self._running[event.worker] = (
                f"{event.optimizer} {what} {event.number}: epoch {event.epoch}/{event.epochs}, "
                f"{event.test_accuracy:.1%}"
            )
        elif isinstance(event, TrialEnded):
            self._running.pop(event.worker, None)
        elif isinstance(event, WorkerWaiting):
            self._running[event.worker] = "waiting for the other workers"
        elif isinstance(event, WorkerEnded):
            self._running.pop(event.worker, None)
            if event.status in ("error", "crashed"):
                self.worker_messages.append(f"worker {event.worker}: {event.message}")
        self._dirty = True

    @Slot(object)
    def _on_results(self, results: SweepResults) -> None:
        self.results = results
        self._dirty = True

    @Slot(str, str)
    def _on_errored(self, message: str, details: str) -> None:
        self.worker_messages.append(message)
        if details:
            self.window.append_log(details)

    def _frame(self) -> None:
        self.pacer.frame()
        if self._dirty:
            self._dirty = False
            self.draw()

    def draw(self) -> None:
        """Show the latest results and the workers' state now."""
        results = self.results
        if results is not None:
            self.view.show_results(results)
            self.view.plots.show_results(results)
            done = sum(
                t.state in ("complete", "pruned", "failed")
                for o in results.optimizers
                for t in o.counted
            )
            budget = results.spec.trials * len(results.optimizers)
            seeds = sum(o.stats.runs if o.stats else 0 for o in results.optimizers)
            line = (
                f"Sweep {results.name!r}: {done}/{budget} tuning trials, "
                f"{seeds}/{results.spec.seeds * len(results.optimizers)} seed runs; "
                f"pruning saved {results.epochs_saved} epochs."
            )
        else:
            line = ""
        if self._running:
            line += " Now: " + "; ".join(self._running[w] for w in sorted(self._running)) + "."
        if line:
            self.view.status_label.setText(line.strip())

    @Slot()
    def _on_done(self) -> None:
        self.job = self.runner = None
        self.frame_timer.stop()
        self._running = {}
        self.draw()
        self.view.set_running(False)
        if self.worker_messages:
            # Before the sweep was made or opened: it never started (a name taken with
            # other settings, a storage that cannot be opened).
            what = "Cannot start" if self.sweep is None else "The sweep stopped with a problem"
            self._show_error(f"{what}: " + "; ".join(self.worker_messages))
        else:
            status = self.sweep.status() if self.sweep is not None else None
            if status is not None and status.done:
                self.view.show_message(
                    f"Sweep {status.name!r} is complete: pick a row and Use these settings, "
                    "or export."
                )
            elif status is not None:
                self.view.show_message(
                    f"Sweep {status.name!r} stopped at {status.trials_finished}/"
                    f"{status.trials_budget} tuning trials: Resume continues it."
                )
        self.running_changed.emit(False)
        self.window.update_actions()
        if self._close_requested:
            self.window.close()

    # ----- existing sweeps -------------------------------------------------------------
    @Slot()
    def reload_names(self) -> list[str]:
        """List the sweeps in the form's storage (quick: one query) for Resume."""
        from fmnist_gui.sweep.storage import default_storage_url, open_storage, sqlite_path
        from fmnist_gui.sweep.study import Sweep

        url = self.view.form.storage_url()
        path = sqlite_path(url or default_storage_url())
        if path is not None and not path.exists():
            names: list[str] = []  # nothing there yet; never create a file just to look
        else:
            try:
                names = Sweep.names(open_storage(url))
            except FmnistError as exc:
                self._show_error(str(exc))
                names = []
        self.view.form.set_sweep_names(names)
        self.view.resume_button.setEnabled(self.job is None and bool(names))
        return names

    # ----- use and export ------------------------------------------------------------------
    def best_config(self, optimizer: str) -> dict[str, Any] | None:
        """``optimizer``'s best tuning setting as a ``TrainConfig.to_dict()``, or None."""
        results = self.results
        if results is None:
            return None
        found = results.best_settings(optimizer)
        if found is None:
            return None
        lr, params = found
        spec = results.spec
        # The seed the tuning trials trained with.
        return spec.train_config(optimizer, lr, params, spec.seed).to_dict()

    @Slot()
    def use_selected(self) -> None:
        optimizer = self.view.selected_optimizer()
        config = self.best_config(optimizer) if optimizer else None
        if config is None:
            self._show_error(
                "No finished trial to copy yet: select an optimizer with a best value."
            )
            return
        self.use_settings_requested.emit(config)
        self.window.statusBar().showMessage(
            f"The best {optimizer} setting is in the Training form (lr {config['lr']:.3g}).", 8000
        )

    def export_csv(self, path: str | Path) -> Path:
        """Every trial of the shown sweep as CSV (the engine's ``write_trials_csv``)."""
        from fmnist_gui.sweep.report import write_trials_csv

        if self.results is None:
            raise ValueError("there is no sweep to export yet: start or resume one first")
        return write_trials_csv(self.results, Path(path))

    def export_plots(self, path: str | Path) -> Path:
        """The three plots as one PNG or SVG (by the suffix)."""
        from fmnist_gui.qt.widgets.export import export_plots

        if self.results is None:
            raise ValueError("there is no sweep to export yet: start or resume one first")
        return export_plots([self.view.plots.plots()], path)

    def _ask_export_csv(self) -> None:
        name = self.results.name if self.results is not None else "sweep"
        path, _ = QFileDialog.getSaveFileName(
            self.view, "Export the trials as CSV", f"{name}-trials.csv", "CSV files (*.csv)"
        )
        if path:
            self._export(self.export_csv, path)

    def _ask_export_plots(self) -> None:
        name = self.results.name if self.results is not None else "sweep"
        path, _ = QFileDialog.getSaveFileName(
            self.view,
            "Save the plots",
            f"{name}-plots.png",
            "PNG image (*.png);;SVG drawing (*.svg)",
        )
        if path:
            self._export(self.export_plots, path)

    def _export(self, write, path: str) -> None:
        try:
            written = write(path)
        except (OSError, ValueError) as exc:
            self._show_error(f"Export failed: {exc}")
            return
        self.view.show_message(f"Wrote {written}")

    # ----- closing ----------------------------------------------------------------------
    def hold_close(self) -> bool:
        """While a sweep runs: ask, then stop it after the current batch and close once it ended."""
        if self.job is None:
            return False
        if self._close_requested:
            return True  # _on_done closes the window again
        if self.quit_box is None:
            name = self.sweep.name if self.sweep is not None else self.view.form.name_edit.text()
            box = QMessageBox(
                QMessageBox.Icon.Question,
                "Quit while a sweep runs?",
                f"Sweep {name!r} is running. Quitting stops its workers after the current "
                "batch; the interrupted trials run again when you Resume the sweep (in the "
                "Sweep tab, or with fmnist-sweep).",
                QMessageBox.StandardButton.Cancel,
                self.window,
            )
            self.quit_button = box.addButton("Stop and quit", QMessageBox.ButtonRole.AcceptRole)
            box.setDefaultButton(self.quit_button)
            box.setWindowModality(Qt.WindowModality.WindowModal)
            box.finished.connect(lambda _result: self._on_quit_answer(box))
            self.quit_box = box
            box.open()
        return True

    def _on_quit_answer(self, box: QMessageBox) -> None:
        self.quit_box = None
        box.deleteLater()
        if box.clickedButton() is not self.quit_button:
            return
        self._close_requested = True
        self.stop()
        self.window.statusBar().showMessage("Stopping the sweep, then quitting…")
        if self.job is None:
            self.window.close()

    @Slot()
    def _on_closing(self) -> None:
        self.frame_timer.stop()
        if self.ready:
            settings = self.window.settings
            settings.setValue("sweep/study", self.view.form.name_edit.text().strip())
            settings.setValue("sweep/storage", self.view.form.storage_edit.text().strip())

    def busy(self) -> bool:
        return self.job is not None

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Stop the sweep and join its thread; kill the workers if they do not end in time."""
        if self.runner is not None:
            self.runner.request_stop()
        if self.job is not None and not self.job.wait(timeout_ms):
            if self.runner is not None:
                self.runner.kill()
            if self.job is not None:
                self.job.wait(timeout_ms)
