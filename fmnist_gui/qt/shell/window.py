"""The window shell: menus, a side area, tabs in the centre, the log below, the status bar.

The shell knows no feature. Features (built in ``fmnist_gui.qt.app``) fill it
through a small typed contract:

``actions: ActionTable``
    Every command by name, registered with the states it is enabled in
    (``add_action``); ``update_actions()`` enables them from ``state``.
``menus: dict[str, QMenu]``, ``toolbar``, ``tabs``, ``add_side_widget()``, ``log``
    Where features put their commands and views.
``state`` / ``set_state()`` / ``state_changed``
    The app's ``AppState``; it starts as ``"loading"`` and turns ``"idle"`` when
    the ``backend`` has loaded.
``close_guards: list[CloseGuard]``
    Asked in order by the one ``closeEvent``; ``closing`` is emitted once none
    holds the window open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from PySide6.QtCore import QSettings, Qt, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QFont, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTextBrowser,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from fmnist_gui import __version__
from fmnist_gui.qt.shell.actions import ALWAYS, STATES, ActionTable, AppState, Blocker
from fmnist_gui.qt.shell.backend import Backend

SETTINGS_ORG = SETTINGS_APP = "fmnist-gui"
APP_TITLE = "Fashion-MNIST Trainer"


def make_settings() -> QSettings:
    """The app's settings (organization and application "fmnist-gui", native format)."""
    return QSettings(SETTINGS_ORG, SETTINGS_APP)


class CloseGuard(Protocol):
    """Something that may keep the window open when the user closes it."""

    def hold_close(self) -> bool:
        """True to keep the window open for now.

        A guard that holds has started whatever must come first (a question, a
        cooperative stop) and calls ``window.close()`` again once closing may go
        on, or never, when the user cancelled.
        """
        ...


class MainWindow(QMainWindow):
    """The app's window; see the module docstring for what features may use.

    ``actions`` hides ``QWidget.actions()`` from Python callers, as in mnelab: the
    window's commands are looked up by name (``window.actions["save"]``), and Qt's
    own C++ code still reaches the widget's action list.
    """

    state_changed = Signal(str)  # the new AppState
    actions_updated = Signal()  # after update_actions(): texts that follow the state
    closing = Signal()  # no guard holds the window: save settings, let go of files

    def __init__(self, backend: Backend, settings: QSettings) -> None:
        super().__init__()
        self.backend = backend
        self.settings = settings
        self.state: AppState = "loading"
        self.actions: ActionTable = ActionTable()  # type: ignore[assignment]
        self.menus: dict[str, QMenu] = {}
        self.close_guards: list[CloseGuard] = []

        self.setWindowTitle(APP_TITLE)
        self._build_menus()
        self._build_central()
        self.add_action(
            "quit",
            "&Quit",
            self.close,
            states=ALWAYS,
            shortcut="Ctrl+Q",
            tip="Quit the application",
        )
        self.add_action(
            "about",
            "&About",
            self.about,
            states=ALWAYS,
            tip="Versions of the app, torch, Qt and the plugins",
        )
        self.add_action(
            "guide",
            "&Getting Started",
            self.show_guide,
            states=ALWAYS,
            tip="A short guide: train, watch, continue, save, compare",
        )
        self.add_action(
            "shortcuts",
            "&Keyboard Shortcuts",
            self.show_shortcuts,
            states=ALWAYS,
            shortcut="Ctrl+/",
            tip="Every command's keyboard shortcut",
        )
        self.actions["quit"].setMenuRole(QAction.MenuRole.QuitRole)
        self.actions["about"].setMenuRole(QAction.MenuRole.AboutRole)
        self.menus["file"].addAction(self.actions["quit"])
        help_menu = self.menus["help"]
        help_menu.addAction(self.actions["guide"])
        help_menu.addAction(self.actions["shortcuts"])
        help_menu.addSeparator()
        help_menu.addAction(self.actions["about"])
        self.help_dialog: QDialog | None = None
        self.statusBar().showMessage("Starting…")
        self._restore_geometry()
        backend.loaded.connect(self._on_backend_loaded)
        backend.failed.connect(self._on_backend_failed)
        self.update_actions()

    # ----- construction -----------------------------------------------------------
    def _build_menus(self) -> None:
        bar = self.menuBar()
        for name, title in (
            ("file", "&File"),
            ("training", "&Training"),
            ("plugins", "&Plugins"),
            ("help", "&Help"),
        ):
            self.menus[name] = bar.addMenu(title)
        toolbar = QToolBar("Training")
        toolbar.setObjectName("training_toolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.addToolBar(toolbar)
        self.toolbar = toolbar

    def _build_central(self) -> None:
        side = QWidget()
        self._side_layout = QVBoxLayout(side)
        self._side_layout.setContentsMargins(6, 6, 0, 6)

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)

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

    def add_action(
        self,
        name: str,
        text: str,
        slot: Callable[[], object] | None,
        *,
        states: frozenset[AppState],
        shortcut: str | None = None,
        tip: str = "",
        blocker: Blocker | None = None,
    ) -> QAction:
        """A new action, registered in ``actions`` as ``name`` (object name ``action_<name>``)."""
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
            action.triggered.connect(lambda _checked=False: slot())
        return self.actions.add(name, action, states, blocker=blocker)

    def add_side_widget(self, widget: QWidget, stretch: int = 0) -> None:
        """Stack ``widget`` in the left column (the training form, the progress)."""
        self._side_layout.addWidget(widget, stretch)

    # ----- the state machine ------------------------------------------------------
    def set_state(self, state: AppState) -> None:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        changed = state != self.state
        self.state = state
        self.update_actions()
        if changed:
            self.state_changed.emit(state)

    def update_actions(self) -> None:
        """Enable exactly the actions the table allows in ``state`` and no blocker holds."""
        self.actions.update(self.state)
        self.actions_updated.emit()

    # ----- start-up ---------------------------------------------------------------
    @Slot(str, str)
    def _on_backend_failed(self, message: str, details: str) -> None:
        self.append_log(details)
        QMessageBox.critical(
            self, "Start-up failed", f"Could not load PyTorch or the plugins:\n\n{message}"
        )

    @Slot()
    def _on_backend_loaded(self) -> None:
        if self.backend.cancelled:  # the window closed while loading
            return
        backend = self.backend
        self.set_state("idle")
        if backend.data is not None:
            n = len(backend.data.train)
            self.statusBar().showMessage(
                f"Ready: {n:,} training images from {backend.data_dir}. Press F5 to train."
            )
        else:
            self.statusBar().showMessage(f"Fashion-MNIST not found in {backend.data_dir}.")
        for record in getattr(backend.plugins, "errors", []):
            self.append_log(f"Plugin {record.name} failed to load: {record.error}")

    @Slot(str)
    def append_log(self, text: str) -> None:
        self.log.appendPlainText(text)

    def scroll_log_to_end(self) -> None:
        """Show the log's newest line (new lines then keep it in view)."""
        bar = self.log.verticalScrollBar()
        bar.setValue(bar.maximum())

    # ----- help -------------------------------------------------------------------
    def shortcut_rows(self) -> list[tuple[str, str]]:
        """(command, shortcut) for every registered action that has a shortcut."""
        rows = []
        for action in self.actions.values():
            keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            if keys:
                rows.append((action.text().replace("&", "").rstrip("…"), keys))
        return rows

    def _show_help(self, title: str, widget: QWidget) -> QDialog:
        # Non-modal: the user can read it while using the window.
        if self.help_dialog is not None:
            self.help_dialog.close()
        dialog = QDialog(self)
        dialog.setWindowTitle(title)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        layout = QVBoxLayout(dialog)
        layout.addWidget(widget)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(dialog.close)
        layout.addWidget(buttons)
        dialog.resize(460, 420)
        self.help_dialog = dialog
        dialog.destroyed.connect(lambda: setattr(self, "help_dialog", None))
        dialog.show()
        return dialog

    @Slot()
    def show_shortcuts(self) -> QDialog:
        """A table of every command's shortcut, read from the action registry."""
        rows = self.shortcut_rows()
        table = QTableWidget(len(rows), 2)
        table.setObjectName("shortcuts_table")
        table.setHorizontalHeaderLabels(["Command", "Shortcut"])
        table.verticalHeader().hide()
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for row, (command, keys) in enumerate(rows):
            table.setItem(row, 0, QTableWidgetItem(command))
            table.setItem(row, 1, QTableWidgetItem(keys))
        table.horizontalHeader().setStretchLastSection(True)
        table.resizeColumnToContents(0)
        return self._show_help("Keyboard Shortcuts", table)

    @Slot()
    def show_guide(self) -> QDialog:
        """A short guide to the first run, with the shortcuts as they are set now."""
        text = QTextBrowser()
        text.setObjectName("guide_text")
        text.setHtml(self.guide_html())
        return self._show_help("Getting Started", text)

    def guide_html(self) -> str:
        def keys(name: str) -> str:
            action = self.actions.get(name)
            shortcut = action.shortcut().toString() if action is not None else ""
            return f" ({shortcut})" if shortcut else ""

        return (
            "<h3>Getting started</h3><ol>"
            "<li><b>Choose the settings for a new model</b> on the left: optimizer, loss, "
            "learning rate, epochs, batch size. The defaults are the PyTorch tutorial's.</li>"
            f"<li><b>Start</b>{keys('start')} trains it. The Training tab plots the loss and "
            "the accuracy; the log below shows the tutorial's output.</li>"
            f"<li><b>Pause</b>{keys('pause')} or <b>Stop</b>{keys('stop')} at any batch. "
            f"<b>Continue</b>{keys('start')} trains the <i>current model</i> further with its "
            "own settings, shown read-only under Current model; raise its epochs there to "
            "train past the end.</li>"
            f"<li><b>Save</b>{keys('save')} keeps the model, its plots and its log; "
            f"<b>Open</b>{keys('open')} brings one back. <b>Reset</b> forgets the current "
            "model: the next Start trains a new one.</li>"
            f"<li><b>Find LR</b>{keys('find_lr')} suggests a learning rate. While a model "
            "trains or is paused, <b>Change now</b> under Current model sets its lr (and what "
            "its optimizer allows) at the next batch, marked on the loss plot.</li>"
            "<li>The <b>Compare</b> tab races optimizers on the same data; the "
            "<b>Plugins</b> menu adds optimizers and losses.</li></ol>"
            "<p>Help → Keyboard Shortcuts lists every shortcut.</p>"
        )

    @Slot()
    def about(self) -> None:
        QMessageBox.about(self, f"About {APP_TITLE}", self.about_text())

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
            (APP_TITLE, __version__),
            ("PyTorch", torch_version),
            ("Qt", qVersion()),
            ("PySide6", PySide6.__version__),
            ("pyqtgraph", pg_version),
        ]
        plugins = self.backend.plugins
        plugin_rows = [
            f"<tr><td>{record.name}</td><td>{record.version or '–'}</td>"
            f"<td>{record.source}</td><td>{record.status}</td></tr>"
            for record in (plugins.records.values() if plugins is not None else ())
        ]
        table = "".join(f"<tr><td>{a}</td><td>{b}</td></tr>" for a, b in rows)
        plugin_table = (
            "<p><b>Plugins</b></p><table cellspacing=4><tr><th align=left>Name</th>"
            "<th align=left>Version</th><th align=left>Source</th>"
            "<th align=left>Status</th></tr>" + "".join(plugin_rows) + "</table>"
            if plugin_rows
            else "<p>Plugins: not loaded yet.</p>"
        )
        return (
            "<p>Trains the network of the PyTorch tutorial <i>Optimizing Model "
            "Parameters</i> on Fashion-MNIST.</p>"
            f"<table cellspacing=4>{table}</table>{plugin_table}"
        )

    # ----- settings and closing ---------------------------------------------------
    def _restore_geometry(self) -> None:
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)
        self.fit_to_screen()
        state = self.settings.value("window/splitter")
        if state is not None:
            self.main_splitter.restoreState(state)

    def fit_to_screen(self) -> None:
        """Shrink and move the window into its screen's free area.

        A geometry saved on a larger screen, or at another scale factor, would
        otherwise open partly off screen, its title bar or buttons out of reach.
        """
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None:
            return
        free = screen.availableGeometry()
        frame = self.frameGeometry()
        # Window decorations (title bar, borders) come on top of the client area.
        extra_w = max(0, frame.width() - self.width())
        extra_h = max(0, frame.height() - self.height())
        width = min(self.width(), free.width() - extra_w)
        height = min(self.height(), free.height() - extra_h)
        if (width, height) != (self.width(), self.height()):
            self.resize(max(width, self.minimumWidth()), max(height, self.minimumHeight()))
        frame = self.frameGeometry()
        x = min(max(frame.x(), free.left()), max(free.left(), free.right() + 1 - frame.width()))
        y = min(max(frame.y(), free.top()), max(free.top(), free.bottom() + 1 - frame.height()))
        if (x, y) != (frame.x(), frame.y()):
            self.move(x, y)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        if self.backend.loading:
            # Nothing to lose yet: close at once. The loader stops at its next
            # phase; the app leaves without joining it (it only imports and reads).
            self.backend.cancel()
        else:
            for guard in self.close_guards:
                if guard.hold_close():
                    event.ignore()
                    return
        self.closing.emit()
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/splitter", self.main_splitter.saveState())
        self.backend.save_settings()
        self.settings.sync()
        event.accept()
