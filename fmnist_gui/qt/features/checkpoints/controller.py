"""File menu commands for checkpoints, the title's unsaved mark, autosave and crash recovery.

``CheckpointController`` adds to the window:

* File → Open (Ctrl+O), Open Recent, Save (Ctrl+S; asks for a path the first
  time), Save As (Ctrl+Shift+S), Export weights…, Import weights…;
* the title shows the file and ``[*]`` (``setWindowModified``) while there is
  unsaved training; quitting, opening or importing over it asks first (the
  quit question is window-modal and non-blocking, so closing never hangs);
* saving while training asks the *training thread* for the snapshot
  (``RunDriver.request_snapshot``): it is taken between two batches and the
  training goes on;
* at each epoch end, and every N minutes of running (``autosave/interval_minutes``,
  default 2; at a batch boundary, so a crash mid-epoch loses at most N minutes),
  the training is autosaved under ``user_data_dir()/autosave``, written in a
  worker thread; a clean quit removes it, so one found at the next launch means
  a crash: "Recover unsaved training?".

Loading builds a new ``Trainer`` and hands it to ``TrainingController.adopt_trainer``
only when every check passed: a broken or hostile file changes nothing.
Other features keep their share of a checkpoint's ``extra`` through the
``CheckpointExtras`` protocol.
File I/O is in ``fmnist_gui.checkpoint`` (no Qt there).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from PySide6.QtCore import QObject, QSettings, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox

from fmnist_gui.qt.features.training.controller import TrainingController
from fmnist_gui.qt.infra.worker import FunctionWorker, Job
from fmnist_gui.qt.shell.actions import IDLE, TRAINING
from fmnist_gui.qt.shell.window import APP_TITLE, MainWindow

if TYPE_CHECKING:
    from fmnist_gui.training.state import TrainingState
    from fmnist_gui.training.trainer import Trainer

RECENT_KEY = "checkpoints/recent"
FOLDER_KEY = "folders/checkpoints"
MAX_RECENT = 8
AUTOSAVE_MINUTES_KEY = "autosave/interval_minutes"
DEFAULT_AUTOSAVE_MINUTES = 2.0
# QFileDialog name filters.
FILE_FILTER = "Training checkpoints (*.pt *.pth);;All files (*)"
WEIGHTS_FILTER = "Model weights (*.pth *.pt);;All files (*)"
# Saving while training is allowed: the training thread takes the snapshot at a
# batch boundary (with_snapshot).
SAVING = IDLE | TRAINING

Snapshot: TypeAlias = "TrainingState"


class CheckpointExtras(Protocol):
    """A feature's share of a checkpoint's ``extra`` (plain data only)."""

    def checkpoint_extra(self) -> dict[str, Any]:
        """What to keep in the next checkpoint, by key."""
        ...

    def restore_checkpoint_extra(self, extra: dict[str, Any]) -> None:
        """Take back what ``checkpoint_extra`` kept; called before the trainer is adopted."""
        ...


class CheckpointController(QObject):
    """The checkpoint commands of one window, and its unsaved-training close guard."""

    # (future, callback): emitted from the training thread, handled in the GUI thread.
    _snapshot_done = Signal(object, object)

    def __init__(
        self,
        window: MainWindow,
        training: TrainingController,
        extras: Sequence[CheckpointExtras] = (),
    ) -> None:
        super().__init__(window)
        self.window = window
        self.training = training
        training.save_for_quit = self.save
        self.extras = list(extras)
        self.path: Path | None = None  # the file the live training was opened from/saved to
        self.quit_box: QMessageBox | None = None  # the open "save before quitting?" question
        self._quit_confirmed = False
        self._adopting = False
        self._build_actions()
        self._snapshot_done.connect(self._on_snapshot_done)
        window.state_changed.connect(self._on_state_changed)
        window.closing.connect(self._discard_autosave)  # a clean quit: nothing to recover
        training.trainer_changed.connect(self._on_trainer_changed)
        training.epoch_finished.connect(self._on_epoch_finished)
        # Mid-epoch autosaves: every N minutes of running, at a batch boundary.
        self.autosave_timer = QTimer(self)
        self.autosave_timer.timeout.connect(self._on_autosave_due)
        self.set_autosave_interval(autosave_minutes(window.settings))
        window.state_changed.connect(self._follow_state_with_autosave_timer)
        # The autosave being written (a Job) and the newest one waiting for it.
        self._autosave_job: Job | None = None
        self._autosave_pending: tuple[Snapshot, dict[str, Any]] | None = None
        self.update_title()

    # ----- construction -----------------------------------------------------------
    def _build_actions(self) -> None:
        w = self.window
        add = w.add_action
        opened = add(
            "open",
            "&Open Checkpoint…",
            self.open,
            states=IDLE,
            shortcut="Ctrl+O",
            tip="Load a saved model and its history",
        )
        self.recent_menu = QMenu("Open &Recent", w)
        self.recent_menu.setObjectName("recent_menu")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        recent = self.recent_menu.menuAction()
        recent.setObjectName("action_open_recent")
        w.actions.add("open_recent", recent, IDLE)
        save = add(
            "save", "&Save", self.save, states=SAVING, shortcut="Ctrl+S", tip="Save a checkpoint"
        )
        save_as = add(
            "save_as",
            "Save &As…",
            self.save_as,
            states=SAVING,
            shortcut="Ctrl+Shift+S",
            tip="Save a checkpoint under a new name",
        )
        export = add(
            "export_weights",
            "&Export Weights…",
            self.export_weights,
            states=SAVING,
            tip="Save the model's weights as the tutorial does: "
            "torch.save(model.state_dict(), path)",
        )
        imported = add(
            "import_weights",
            "&Import Weights…",
            self.import_weights,
            states=IDLE,
            tip="Start a new training from saved model weights "
            "(the tutorial's model_weights.pth, or a checkpoint)",
        )
        # File: Open, Open Recent, Save, Save As, ─, Export, Import, ─, Quit
        menu = w.menus["file"]
        quit_action = w.actions["quit"]
        for action in (opened, recent, save, save_as):
            menu.insertAction(quit_action, action)
        menu.insertSeparator(quit_action)
        menu.insertAction(quit_action, export)
        menu.insertAction(quit_action, imported)
        menu.insertSeparator(quit_action)
        w.update_actions()

    # ----- title and unsaved mark -------------------------------------------------
    def update_title(self) -> None:
        w = self.window
        if self.training.trainer is None and self.path is None:
            w.setWindowTitle(f"{APP_TITLE}[*]")
        else:
            name = self.path.name if self.path is not None else "Untitled"
            w.setWindowTitle(f"{name}[*] — {APP_TITLE}")
        w.setWindowModified(self.unsaved)

    @property
    def unsaved(self) -> bool:
        """Training that no file holds yet."""
        t = self.training
        return bool(t.dirty and t.trainer is not None and t.trainer.global_step > 0)

    @Slot(str)
    def _on_state_changed(self, state: str) -> None:
        self.update_title()

    @Slot(object)
    def _on_trainer_changed(self, trainer: Trainer | None) -> None:
        if not self._adopting:
            self.path = None  # a new model (Start) or none (Reset): not from a file
        self.update_title()

    # ----- snapshots ----------------------------------------------------------------
    def with_snapshot(self, callback: Callable[[Snapshot], object], quiet: bool = False) -> None:
        """Call ``callback(state)`` in the GUI thread with a batch-boundary snapshot.

        Idle: taken at once. Training: the training thread takes it between two
        batches and carries on. When no snapshot can be taken (the training
        failed meanwhile), a user's save says so in a dialog; a ``quiet`` one
        (autosave) only in the status bar, since the failure has its own dialog.
        """
        trainer, driver = self.training.trainer, self.training.driver
        if trainer is None:
            return
        if driver is None:
            callback(trainer.state_dict())
            return
        # Taken by the training thread, or at once here if its run has just ended.
        future = driver.request_snapshot()
        future.add_done_callback(lambda f: self._snapshot_done.emit(f, (callback, quiet)))

    @Slot(object, object)
    def _on_snapshot_done(self, future: Future, how: tuple[Callable, bool]) -> None:
        callback, quiet = how
        exc = future.exception()
        if exc is None:
            callback(future.result())
        elif quiet:
            self.window.statusBar().showMessage(f"Autosave skipped: {exc}")
        else:
            QMessageBox.warning(self.window, "Cannot save", f"No snapshot was taken: {exc}")

    def _file_to_load(
        self, path: str | Path | None, what: str, title: str, filters: str, *, confirm: bool
    ) -> Path | None:
        """The file to load (asked for when ``path`` is None), once loading is allowed."""
        w = self.window
        if w.state != "idle" or (confirm and not self.confirm_discard(what)):
            return None
        if path is None:
            path, _ = QFileDialog.getOpenFileName(w, title, self._folder(), filters)
            if not path:
                return None
        return Path(path) if self.training.ensure_data() else None

    # ----- save -------------------------------------------------------------------
    def save(self) -> bool:
        """Save to the current file, or ask for one (Save As) the first time."""
        if self.path is None:
            return self.save_as()
        return self._save_to(self.path)

    def save_as(self) -> bool:
        w = self.window
        if self.training.trainer is None:
            w.statusBar().showMessage("Nothing to save yet: train or open a model first.")
            return False
        start = str(self.path or Path(self._folder()) / "training.pt")
        chosen, _ = QFileDialog.getSaveFileName(w, "Save Checkpoint", start, FILE_FILTER)
        if not chosen:
            return False
        path = Path(chosen)
        if not path.suffix:
            path = path.with_suffix(".pt")
        return self._save_to(path)

    def _save_to(self, path: Path) -> bool:
        """Save (at once when idle; at the next batch boundary when training)."""
        w = self.window
        if self.training.trainer is None:
            return False
        result: list[bool] = []
        self.with_snapshot(lambda state: result.append(self._write(path, state)))
        if self.training.busy and not result:
            w.statusBar().showMessage(f"Saving {path.name} at the next batch…")
            return True
        return bool(result and result[0])

    def _write(self, path: Path, state: Snapshot) -> bool:
        from fmnist_gui import checkpoint as ckpt

        w = self.window
        try:
            size = ckpt.save_checkpoint(
                path, state, extra={"log": w.log.toPlainText(), **self._extras()}
            )
        except ckpt.CheckpointError as exc:
            QMessageBox.warning(w, "Could not save the checkpoint", str(exc))
            w.statusBar().showMessage("Not saved; the previous file is unchanged.")
            return False
        self.path = path
        self._remember(path)
        step = state["position"]["global_step"]
        # Saved everything only if no batch was trained since the snapshot.
        t = self.training
        t.mark_saved(step)
        if not t.busy and t.trainer is not None and t.trainer.global_step == step:
            self._discard_autosave()
        w.statusBar().showMessage(f"Saved {path} (step {step}, {size / 2**20:.1f} MB).")
        self.update_title()
        return True

    # ----- open -------------------------------------------------------------------
    def open(self, path: Path | str | None = None) -> bool:
        """Load a checkpoint; the live model changes only if everything loads."""
        from fmnist_gui import checkpoint as ckpt

        w = self.window
        path = self._file_to_load(
            path, "Open a checkpoint", "Open Checkpoint", FILE_FILTER, confirm=True
        )
        inputs = self.training.engine_inputs()
        if path is None or inputs is None:
            return False
        try:
            checkpoint = ckpt.read_checkpoint(path)
            trainer = ckpt.trainer_from_checkpoint(checkpoint, *inputs, path=path)
        except ckpt.MissingPluginError as exc:
            answer = QMessageBox.question(
                w,
                "Plugin not installed",
                f"{exc}.\n\nLoad only the model's weights, into a new training with the "
                "settings of the form?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.Yes,
            )
            if answer == QMessageBox.StandardButton.Yes:
                return self.import_weights(path, confirm=False)
            return False
        except ckpt.CheckpointError as exc:
            QMessageBox.warning(w, "Cannot open the checkpoint", str(exc))
            w.statusBar().showMessage("Nothing was loaded; the current model is unchanged.")
            return False
        self._adopt(trainer, checkpoint["extra"], path, saved=True)
        self._remember(path)
        w.statusBar().showMessage(f"Opened {path}: Continue trains it further.")
        return True

    def _adopt(self, trainer: Trainer, extra: dict, path: Path | None, *, saved: bool) -> None:
        w = self.window
        log = extra.get("log")
        w.log.setPlainText(log if isinstance(log, str) else rebuild_log(trainer))
        for feature in self.extras:
            feature.restore_checkpoint_extra(extra)
        self.path = path
        self._adopting = True
        try:
            self.training.adopt_trainer(trainer, saved=saved)
        finally:
            self._adopting = False
        self.update_title()

    # ----- weights ------------------------------------------------------------------
    def export_weights(self) -> bool:
        from fmnist_gui import checkpoint as ckpt

        w = self.window
        if self.training.trainer is None:
            w.statusBar().showMessage("No model to export yet.")
            return False
        start = str(Path(self._folder()) / "model_weights.pth")
        chosen, _ = QFileDialog.getSaveFileName(w, "Export Weights", start, WEIGHTS_FILTER)
        if not chosen:
            return False
        path = Path(chosen)

        def write(state: Snapshot) -> None:
            try:
                ckpt.export_weights(path, state["model"])
            except ckpt.CheckpointError as exc:
                QMessageBox.warning(w, "Could not export the weights", str(exc))
                return
            w.statusBar().showMessage(
                f"Exported the weights to {path} (the tutorial's "
                "format: torch.load(path, weights_only=True))"
            )

        self.with_snapshot(write)
        return True

    def import_weights(self, path: Path | str | None = None, *, confirm: bool = True) -> bool:
        """A new training (settings from the form) starting from saved weights."""
        from fmnist_gui import checkpoint as ckpt
        from fmnist_gui.training.trainer import Trainer

        w = self.window
        path = self._file_to_load(
            path, "Import weights", "Import Weights", WEIGHTS_FILTER, confirm=confirm
        )
        if path is None:
            return False
        try:
            weights = ckpt.load_weights(path)
        except ckpt.CheckpointError as exc:
            QMessageBox.warning(w, "Cannot import the weights", str(exc))
            return False
        config, errors = self.training.panel.collect()
        if config is None:
            QMessageBox.warning(
                w, "Cannot import the weights", f"Fix the settings first: {errors[0].message}"
            )
            return False
        inputs = self.training.engine_inputs()
        if inputs is None:
            return False
        try:
            trainer = Trainer(config, *inputs, initial_state=weights)
        except Exception as exc:  # noqa: BLE001 - config, plugin or factory errors alike
            QMessageBox.warning(w, "Cannot import the weights", f"{type(exc).__name__}: {exc}")
            return False
        w.log.clear()
        self._adopting = True
        try:
            self.path = None
            # Weights for a new model: its settings are the form's when Start is pressed.
            self.training.adopt_trainer(
                trainer,
                saved=True,  # nothing trained: nothing unsaved
                imported=f"Weights imported from {path.name}: Start trains a new model from "
                "them with the settings below.",
            )
        finally:
            self._adopting = False
        w.append_log(f"Imported the weights of {path}.")
        self.update_title()
        w.statusBar().showMessage(
            f"Imported {path}: Start trains these weights with the new-model settings."
        )
        return True

    # ----- asking before unsaved training is dropped ---------------------------------
    def confirm_discard(self, doing: str) -> bool:
        """True when there is no unsaved training, or the user saved or dropped it."""
        if not self.unsaved:
            return True
        buttons = QMessageBox.StandardButton
        answer = QMessageBox.question(
            self.window,
            "Unsaved training",
            f"The model has trained {self._steps()} steps since it was last saved. "
            f"Save it before you {doing[0].lower() + doing[1:]}?",
            buttons.Save | buttons.Discard | buttons.Cancel,
            buttons.Save,
        )
        if answer == buttons.Save:
            return self.save()
        return answer == buttons.Discard

    def hold_close(self) -> bool:
        """Unsaved training: ask Save / Discard / Cancel first; closes again after Save or Discard.

        While training runs, the training's own question comes first; once the
        user agreed there to quit, this one is not asked again.
        """
        t = self.training
        if t.busy or not self.unsaved or self._quit_confirmed or t.close_requested:
            return False
        self._ask_before_quit()
        return True

    def _steps(self) -> int:
        return self.training.unsaved_steps

    def _extras(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        for feature in self.extras:
            extra.update(feature.checkpoint_extra())
        return extra

    def _ask_before_quit(self) -> None:
        """Save / Discard / Cancel, window-modal and non-blocking (a sheet on macOS)."""
        if self.quit_box is not None:
            return
        buttons = QMessageBox.StandardButton
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Unsaved training",
            f"The model has trained {self._steps()} steps since it was "
            "last saved. Save it before quitting?",
            buttons.Save | buttons.Discard | buttons.Cancel,
            self.window,
        )
        box.setDefaultButton(buttons.Save)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.finished.connect(lambda _result: self._on_quit_answer(box))
        self.quit_box = box
        box.open()

    def _on_quit_answer(self, box: QMessageBox) -> None:
        self.quit_box = None
        box.deleteLater()
        answer = box.standardButton(box.clickedButton())
        buttons = QMessageBox.StandardButton
        if answer == buttons.Save:
            if not self.save():
                return
        elif answer != buttons.Discard:
            return
        self._quit_confirmed = True
        self.window.close()

    # ----- autosave and recovery ------------------------------------------------------
    def set_autosave_interval(self, minutes: float) -> None:
        """Autosave every ``minutes`` of running too, not only at epoch ends (0: never)."""
        self.autosave_minutes = max(0.0, float(minutes))
        self.autosave_timer.setInterval(max(1, round(self.autosave_minutes * 60_000)))
        if self.autosave_minutes <= 0:
            self.autosave_timer.stop()

    @Slot(str)
    def _follow_state_with_autosave_timer(self, state: str) -> None:
        # Running time only: a paused model does not change.
        if state == "running" and self.autosave_minutes > 0:
            if not self.autosave_timer.isActive():
                self.autosave_timer.start()
        elif state != "stopping":
            self.autosave_timer.stop()

    @Slot()
    def _on_autosave_due(self) -> None:
        if self.window.state == "running":
            self.with_snapshot(self._autosave, quiet=True)

    @Slot(object)
    def _on_epoch_finished(self, _event: object) -> None:
        self.with_snapshot(self._autosave, quiet=True)
        if self.autosave_timer.isActive():
            self.autosave_timer.start()  # the epoch end just saved: count N minutes from here

    def _autosave(self, state: Snapshot, *, wait: bool = False) -> None:
        """Write ``state`` as this session's autosave in a worker thread (the newest wins).

        ``wait``: block until written (a recovered autosave replaces the crashed one).
        """
        extra = {"log": self.window.log.toPlainText(), "origin": str(self.path or "")}
        extra.update(self._extras())
        self._autosave_pending = (state, extra)
        if self._autosave_job is None:
            self._write_next_autosave()
        if wait:
            self.wait_for_autosave(60_000)

    def _write_next_autosave(self) -> None:
        if self._autosave_pending is None:
            return
        state, extra = self._autosave_pending
        self._autosave_pending = None
        worker = FunctionWorker(_write_autosave, state, extra)
        worker.returned.connect(self._on_autosave_written)
        self._autosave_job = Job(worker, self)
        self._autosave_job.done.connect(self._on_autosave_job_done)
        self._autosave_job.start()

    @Slot(object)
    def _on_autosave_written(self, problem: str) -> None:
        if problem:
            self.window.statusBar().showMessage(f"Autosave failed: {problem}")

    @Slot()
    def _on_autosave_job_done(self) -> None:
        self._autosave_job = None
        self._write_next_autosave()

    def wait_for_autosave(self, timeout_ms: int = 30_000) -> None:
        """Finish writing autosaves in flight (before discarding one, and at shutdown)."""
        while self._autosave_job is not None:
            job = self._autosave_job
            if not job.wait(timeout_ms):
                return
            if self._autosave_job is job:  # done was handled by wait(): start the next
                self._autosave_job = None
                self._write_next_autosave()

    @Slot()
    def _discard_autosave(self) -> None:
        if self.window.state == "loading":
            # Quit before the recovery was even offered: the last crash's autosave
            # is still to be offered next time (and importing the checkpoint code
            # would wait for torch, which the loader may be importing right now).
            return
        from fmnist_gui import checkpoint as ckpt

        self._autosave_pending = None
        self.wait_for_autosave()  # or the write in flight would bring the file back
        with contextlib.suppress(OSError):
            ckpt.discard_autosave()

    @Slot()
    def offer_recovery(self) -> bool:
        """After a crash, offer the autosave it left; True when one was recovered."""
        from fmnist_gui import checkpoint as ckpt

        w = self.window
        if self.training.trainer is not None or w.state != "idle":
            return False
        found = ckpt.find_recoverable_autosaves()
        if not found:
            return False
        newest = found[0]
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(newest.saved_at))
        buttons = QMessageBox.StandardButton
        answer = QMessageBox.question(
            w,
            "Recover unsaved training?",
            f"The app did not close properly last time. Training autosaved at {when} was "
            "never saved to a file.\n\nRecover it? (Discard deletes it; Cancel asks again "
            "next time.)",
            buttons.Yes | buttons.Discard | buttons.Cancel,
            buttons.Yes,
        )
        if answer == buttons.Discard:
            ckpt.discard_autosave(newest.path)
            return False
        inputs = self.training.engine_inputs()
        if answer != buttons.Yes or inputs is None:
            return False
        try:
            checkpoint = ckpt.read_checkpoint(newest.path)
            trainer = ckpt.trainer_from_checkpoint(checkpoint, *inputs, path=newest.path)
        except ckpt.CheckpointError as exc:
            QMessageBox.warning(w, "Cannot recover the training", str(exc))
            return False
        origin = checkpoint["extra"].get("origin") or ""
        self._adopt(trainer, checkpoint["extra"], Path(origin) if origin else None, saved=False)
        # Held by this session's autosave from now on; then the crashed one can go.
        self._autosave(trainer.state_dict(), wait=True)
        ckpt.discard_autosave(newest.path)
        w.statusBar().showMessage("Recovered the unsaved training: save it with Ctrl+S.")
        return True

    # ----- recent files -------------------------------------------------------------
    def recent_files(self) -> list[str]:
        value = self.window.settings.value(RECENT_KEY, [])
        if isinstance(value, str):  # QSettings gives a str for a one-item list
            value = [value]
        if not isinstance(value, (list, tuple)):
            return []
        return [str(v) for v in value][:MAX_RECENT]

    def _remember(self, path: Path) -> None:
        path = path.resolve()
        recent = [p for p in self.recent_files() if p != str(path)]
        settings = self.window.settings
        settings.setValue(RECENT_KEY, [str(path), *recent][:MAX_RECENT])
        settings.setValue(FOLDER_KEY, str(path.parent))

    def _fill_recent_menu(self) -> None:
        menu = self.recent_menu
        menu.clear()
        recent = self.recent_files()
        for number, name in enumerate(recent, 1):
            action = menu.addAction(f"&{number} {name}")
            action.setEnabled(Path(name).is_file())
            action.triggered.connect(lambda _=False, p=name: self.open(p))
        if not recent:
            menu.addAction("No recent checkpoints").setEnabled(False)
        else:
            menu.addSeparator()
            menu.addAction("Clear the list").triggered.connect(
                lambda: self.window.settings.remove(RECENT_KEY)
            )

    def _folder(self) -> str:
        return str(self.window.settings.value(FOLDER_KEY, "") or Path.home())


def rebuild_log(trainer: Trainer) -> str:
    """The tutorial's lines for a loaded history (for checkpoints made by the CLI)."""
    from fmnist_gui.training.events import BatchEnd, EpochStart
    from fmnist_gui.training.tutorial_log import format_event

    losses, epochs = trainer.history.batch_losses, trainer.history.epochs
    loader = trainer.train_loader
    n, size, batch_size = len(loader), loader.dataset_size, trainer.config.batch_size
    lines: list[str] = []
    step = epoch = 0
    while step < len(losses) or epoch < len(epochs):
        epoch += 1
        lines.append(format_event(EpochStart(epoch, n, 0)) or "")
        for batch in range(min(n, len(losses) - step)):
            length = min(batch_size, size - batch * batch_size)
            line = format_event(BatchEnd(epoch, batch, step + 1, losses[step], length, size, n))
            if line is not None:
                lines.append(line)
            step += 1
        if epoch <= len(epochs):
            lines.append(format_event(epochs[epoch - 1]) or "")
    return "\n".join(lines)


def autosave_minutes(settings: QSettings) -> float:
    """The autosave interval the user chose (``autosave/interval_minutes``), default 2."""
    value = settings.value(AUTOSAVE_MINUTES_KEY, DEFAULT_AUTOSAVE_MINUTES)
    try:
        return float(value)  # type: ignore[arg-type]  # a str from the file, or a number
    except (TypeError, ValueError):
        return DEFAULT_AUTOSAVE_MINUTES


def _write_autosave(state: Snapshot, extra: dict[str, Any]) -> str:
    """Write an autosave (in a worker thread); "" or what went wrong."""
    from fmnist_gui import checkpoint as ckpt

    try:
        ckpt.autosave(state, extra=extra)
    except (ckpt.CheckpointError, OSError) as exc:
        return str(exc)
    return ""
