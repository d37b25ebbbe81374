"""The Compare tab's place in the window: races block training, and closing waits for them.

``CompareController`` builds the ``RaceView`` once the backend has loaded, keeps
it on the app's current plugin host and data, blocks Start/Continue while a
race runs (and the race while training runs), and is a close guard: closing
during a race stops it cooperatively and closes once its thread has ended.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Slot

from fmnist_gui.analysis.runs import RunList
from fmnist_gui.qt.features.training.controller import TrainingController
from fmnist_gui.qt.shell.actions import Blocker, first_reason
from fmnist_gui.qt.shell.window import MainWindow

if TYPE_CHECKING:
    from fmnist_gui.qt.features.compare.race_view import RaceView


class CompareController(QObject):
    """Owns the Compare tab (``race_view``) and its rules with the rest of the window."""

    race_view: RaceView  # built by build_view(), once the backend has loaded

    def __init__(self, window: MainWindow, training: TrainingController, runs: RunList) -> None:
        super().__init__(window)
        self.window = window
        self.training = training
        self.runs = runs
        self.ready = False
        self._close_after_race = False
        self._plugins_stale = False
        training.add_blocker(self._race_blocks_training)
        # Other work that keeps a race from starting (a sweep); training is checked below.
        self._blockers: list[Blocker] = []

    def build_view(self) -> RaceView:
        """Build the Compare tab (imports pyqtgraph and torch); once, after the backend loaded."""
        from fmnist_gui.qt.features.compare.race_view import RaceView

        window, training = self.window, self.training
        view = self.race_view = RaceView(training.plugins, training.data, self.runs)
        view.setObjectName("race_view")
        # The host changes in place (a plugin or spec enabled, a package installed):
        # the same object, so only this signal tells the Compare tab to list again.
        window.backend.plugins_changed.connect(self._plugins_changed)
        view.message.connect(lambda text: window.statusBar().showMessage(text, 8000))
        view.race_started.connect(lambda _race: window.update_actions())
        view.race_finished.connect(self._on_race_finished)
        self.ready = True
        window.state_changed.connect(self._on_state)
        window.tabs.currentChanged.connect(lambda _index: self._sync_backend())
        return view

    @property
    def running(self) -> bool:
        """True while a race runs."""
        return self.ready and self.race_view.running

    def _race_blocks_training(self) -> str:
        if self.running:
            return (
                "A race is running in the Compare tab: stop it there or let it finish, then train."
            )
        return ""

    def add_blocker(self, blocker: Blocker) -> None:
        """``blocker()`` says why a race may not start now ("" when it may).

        Call ``refresh_blocked()`` when its answer may have changed.
        """
        self._blockers.append(blocker)

    def refresh_blocked(self) -> None:
        """Enable or block the race's Start for what runs now."""
        if not self.ready:
            return
        training = self.window.state in ("running", "stopping")
        self.race_view.set_blocked(
            "training is running; stop or pause it first"
            if training
            else first_reason(self._blockers)
        )

    @Slot(str)
    def _on_state(self, _state: str) -> None:
        self.refresh_blocked()
        self._sync_backend()

    def _sync_backend(self) -> None:
        """Follow the app's plugin host and data (they can be replaced at any time)."""
        plugins, data = self.training.plugins, self.training.data
        view = self.race_view
        changed = plugins is not view.plugins or self._plugins_stale
        if plugins is not None and changed and not view.running:
            view.set_plugins(plugins)
            self._plugins_stale = False
        if data is not view.data:
            view.set_data(data)

    @Slot(object)
    def _plugins_changed(self, _plugins: object) -> None:
        self._plugins_stale = True  # a running race keeps its list until it ends
        self._sync_backend()

    def _on_race_finished(self, _race: object) -> None:
        self.window.update_actions()
        if self._close_after_race:
            self.window.close()

    def hold_close(self) -> bool:
        """Closing during a race: stop it cooperatively, close once its thread ended."""
        if not self.running:
            return False
        self._close_after_race = True
        self.race_view.stop()
        return True

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Stop the race and join its thread."""
        if self.ready:
            self.race_view.shutdown(timeout_ms)
