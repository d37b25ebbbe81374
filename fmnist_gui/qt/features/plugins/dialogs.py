"""The Plugins menu: Manage plugins…, Install from file…, Install package…, Uninstall package….

``PluginMenu`` adds four actions to ``window.menus["plugins"]`` (enabled only
while the window is idle and the plugins have loaded, since plugins change the
forms); ``ask_about_untrusted()``, called once the backend has loaded, asks
about plugin files that are not approved yet. A changed host is handed back
to ``window.backend.set_plugins`` so every form follows it.

All plugin logic lives below Qt: ``PluginHost`` (load, enable, disable,
approve, remove, rescan) and ``fmnist_gui.plugins.installer`` (copy with consent, the
remembered choices, the pip command). These dialogs only ask and show.
Dialogs are looked up on ``QMessageBox``/``QFileDialog`` at call time so that
tests can patch them. Work on the host that may self-test specs (a rescan
after pip, enabling a plugin or a spec) runs in a worker thread (``HostTask``)
while the dialog shows its progress and takes no other command.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QProcess, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from fmnist_gui.plugins import installer
from fmnist_gui.qt.infra.worker import FunctionWorker, Job
from fmnist_gui.qt.shell.actions import IDLE
from fmnist_gui.qt.shell.window import MainWindow

if TYPE_CHECKING:
    from fmnist_gui.plugins.host import PluginHost, PluginRecord, RescanReport, SpecStatus

COLUMNS = ("Enabled", "Name", "Registers", "Version", "Source", "Status")
PLUGIN_DETAILS_HINT = (
    "Select a plugin to see where it comes from and, if it failed, the error and its traceback."
)
SPEC_COLUMNS = ("On", "Name", "Label", "Kind", "Plugin", "Status", "Self-test", "Reason")
SPEC_FILTERS = (
    ("All", ""),
    ("Offered", "offered"),
    ("Refused", "refused"),
    ("Disabled", "disabled"),
)
STATUS_TEXT = {
    "loaded": "loaded",
    "failed": "failed",
    "disabled": "disabled",
    "untrusted": "needs approval",
}


class PluginMenu(QObject):
    """The Plugins menu of one window; ``actions`` holds its three commands by short name."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.actions: dict[str, QAction] = {}
        menu = window.menus["plugins"]
        for name, text, slot, tip in (
            (
                "manage",
                "&Manage plugins…",
                lambda: open_manager(window),
                "See every plugin, its status and errors; enable, disable or remove plugins",
            ),
            (
                "install_file",
                "Install from &file…",
                lambda: install_from_file(window),
                "Install a single-file .py plugin (asks before running it)",
            ),
            (
                "install_package",
                "Install &package…",
                lambda: open_package_installer(window),
                "pip install a plugin package, wheel or project folder, without restarting",
            ),
            (
                "uninstall_package",
                "&Uninstall package…",
                lambda: uninstall_package(window),
                "pip uninstall a plugin package; its optimizers disappear without restarting",
            ),
        ):
            action = QAction(text, window)
            action.setObjectName(f"plugins_{name}")
            action.setStatusTip(tip)
            action.triggered.connect(slot)
            menu.addAction(action)
            window.actions.add(f"plugins_{name}", action, IDLE, blocker=self._not_loaded)
            self.actions[name] = action
        window.update_actions()

    def _not_loaded(self) -> str:
        return "" if self.window.backend.plugins is not None else "The plugins did not load."

    def ask_about_untrusted(self) -> None:
        """Ask about each plugin file that is new or changed since it was approved."""
        ask_about_untrusted(self.window)


# ----- shared helpers ------------------------------------------------------------------
def _settings() -> installer.PluginSettings:
    return installer.PluginSettings.load()


def _host(window: MainWindow) -> PluginHost:
    host = window.backend.plugins
    if host is None:  # the menu is disabled until the plugins have loaded
        raise RuntimeError("the plugins have not loaded")
    return host


def _refresh_window(window: MainWindow) -> None:
    """The host changed in place: rebuild the combo boxes and forms from it."""
    window.backend.set_plugins(_host(window))


def _consent(parent: QWidget, title: str, path: Path, sha256: str, intro: str) -> bool:
    text = (
        f"{intro}\n\nFile: {path}\nSHA-256: {sha256}\n\n"
        "A plugin is Python code: it runs with your permissions. Only continue if "
        "you trust where it comes from."
    )
    answer = QMessageBox.question(
        parent,
        title,
        text,
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


def ask_about_untrusted(window: MainWindow) -> None:
    """Ask about each plugin file that is new or changed since it was approved."""
    host = window.backend.plugins
    if host is None:
        return
    approved = False
    for name, record in list(host.records.items()):
        if record.status != "untrusted":
            continue
        if _consent(
            window,
            "Run this plugin?",
            Path(record.location),
            record.sha256,
            f"The plugin file {Path(record.location).name} {_why_untrusted(record)}. Load it?",
        ):
            approve(window, name)
            approved = True
    if approved:
        _refresh_window(window)


def _why_untrusted(record: PluginRecord) -> str:
    return (
        "changed since you approved it"
        if "changed" in record.error
        else "has not been approved yet"
    )


def approve(window: MainWindow, name: str) -> PluginRecord:
    """Trust the file's current hash (already shown to the user) and load it."""
    host = _host(window)
    record = host.records[name]
    settings = _settings()
    settings.trusted_files[Path(record.location).name] = record.sha256
    settings.save()
    return host.approve(name, record.sha256)


# ----- Install from file… ----------------------------------------------------------------
def install_from_file(window: MainWindow, path: str | Path | None = None) -> PluginRecord | None:
    """Pick a ``.py`` plugin, ask with its SHA-256, copy it in, and load it now.

    Returns the new ``PluginRecord``, or ``None`` when nothing was installed.
    """
    parent = window
    if path is None:
        path, _ = QFileDialog.getOpenFileName(
            parent, "Install plugin from file", "", "Python plugin (*.py)"
        )
        if not path:
            return None
    path = Path(path)
    host = _host(window)
    try:
        installer.check_plugin_file(path)
        sha256 = installer.file_sha256(path)
    except (installer.InstallError, OSError) as exc:
        QMessageBox.warning(parent, "Cannot install plugin", str(exc))
        return None
    name = path.stem
    existing = host.records.get(name)
    if existing is not None and existing.source != "file":
        QMessageBox.warning(
            parent,
            "Cannot install plugin",
            f"A {existing.source} plugin named {name!r} is already installed "
            f"({existing.location}). Rename the file.",
        )
        return None
    intro = (
        f"Install the plugin {path.name}"
        + (" and replace the one installed with that name" if existing else "")
        + "?"
    )
    if not _consent(parent, "Install plugin?", path, sha256, intro):
        return None
    settings = _settings()
    try:
        installed = installer.install_file(path, sha256, settings=settings)
    except installer.InstallError as exc:
        QMessageBox.warning(parent, "Cannot install plugin", str(exc))
        return None
    if existing is not None:
        host.remove(name)
    host.trusted[installed.path.name] = installed.sha256
    record = host.load_file(installed.path, require_approval=True)
    _refresh_window(window)
    if record.status == "loaded":
        offers = ", ".join(record.provides) or "nothing"
        note = f" ({record.error})" if record.error else ""
        window.statusBar().showMessage(f"Installed plugin {name}: {offers}{note}")
        window.append_log(f"Installed plugin {name} from {path}: {offers}{note}")
    else:
        QMessageBox.warning(
            parent,
            "Plugin installed but not loaded",
            f"{name} was copied to {installed.path} but failed to load:\n\n"
            f"{record.error}\n\nSee Plugins → Manage plugins… for the traceback.",
        )
    return record


# ----- work on the host off the GUI thread ---------------------------------------------
class HostTask(QObject):
    """Runs ``fn()`` (which may self-test specs) in a worker thread, once.

    ``progress(done, total, plugin)`` relays the host's ``on_selftest`` to the
    GUI thread; ``finished_with(result, error)`` comes once the thread ended.
    """

    progress = Signal(int, int, str)
    finished_with = Signal(object, str)

    def __init__(
        self, host: PluginHost, fn: Callable[[], object], parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.host = host
        self.result: object = None
        self.error = ""
        self._previous = host.on_selftest
        host.on_selftest = self.progress.emit  # emitted from the worker: queued to the GUI
        worker = FunctionWorker(fn)
        worker.returned.connect(self._returned)
        worker.errored.connect(self._errored)
        self.job = Job(worker, self)
        self.job.done.connect(self._done)

    def start(self) -> HostTask:
        self.job.start()
        return self

    @property
    def running(self) -> bool:
        return self.job.thread is not None

    def wait(self, msecs: int = 600_000) -> bool:
        return self.job.wait(msecs)

    @Slot(object)
    def _returned(self, result: object) -> None:
        self.result = result

    @Slot(str, str)
    def _errored(self, message: str, _traceback: str) -> None:
        self.error = message

    @Slot()
    def _done(self) -> None:
        self.host.on_selftest = self._previous
        self.finished_with.emit(self.result, self.error)


def _progress_text(done: int, total: int, plugin: str) -> str:
    return f"Self-testing {plugin}: {done + 1} of {total}…"


def package_plugins(host: PluginHost) -> dict[str, list[str]]:
    """Installed distribution -> the plugins it provides (built-ins and files excluded)."""
    found: dict[str, list[str]] = {}
    for key in host.records:
        dist = host.distribution_of(key)
        if dist:
            found.setdefault(dist, []).append(key)
    return found


def uninstall_package(
    window: MainWindow, distribution: str | None = None
) -> PackageInstallDialog | None:
    """Ask which plugin package to remove (if not given), confirm, and run pip uninstall."""
    from PySide6.QtWidgets import QInputDialog

    packages = package_plugins(_host(window))
    if not packages:
        QMessageBox.information(
            window,
            "Uninstall package",
            "No plugin package is installed (built-in plugins and plugin files are not "
            "packages: disable them, or remove a file in Plugins → Manage plugins…).",
        )
        return None
    if distribution is None:
        choice, ok = QInputDialog.getItem(
            window, "Uninstall package", "Plugin package:", sorted(packages), 0, False
        )
        if not ok:
            return None
        distribution = choice
    plugins = ", ".join(packages.get(distribution, [])) or "no plugin"
    answer = QMessageBox.question(
        window,
        "Uninstall package?",
        f"Remove the package {distribution} (plugins: {plugins}) from this Python with "
        f"pip uninstall?\n\n{sys.executable}\n\nIts optimizers and losses disappear now; "
        "a model using them can no longer continue.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    if answer != QMessageBox.StandardButton.Yes:
        return None
    dialog = PackageInstallDialog(window)
    dialog.setWindowTitle("Uninstall plugin package")
    dialog.open()
    dialog.uninstall(distribution)
    return dialog


# ----- Manage plugins… -------------------------------------------------------------------
def open_manager(window: MainWindow) -> PluginManagerDialog:
    dialog = PluginManagerDialog(window)
    dialog.open()
    return dialog


class PluginManagerDialog(QDialog):
    """Every plugin with what it registers, its version, source and status.

    Select a row to see its location, SHA-256, error and traceback below.
    The Enabled check box is remembered; built-ins can be disabled but not
    removed; plugin files can be removed, packages uninstalled. The second tab
    lists every spec (optimizer, loss, schedule) with its status, self-test time
    and reason, filtered by status and text; its check box turns one spec off.
    """

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window_ = window
        self.setWindowTitle("Plugins")
        self.resize(860, 520)

        self.warning_label = QLabel()
        self.warning_label.setObjectName("plugin_warnings")
        self.warning_label.setWordWrap(True)
        self.warning_label.setStyleSheet("color: #a33;")

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("plugin_table")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.itemChanged.connect(self._item_changed)
        self.table.itemSelectionChanged.connect(self._show_details)

        self.details = QPlainTextEdit()
        self.details.setObjectName("plugin_details")
        self.details.setReadOnly(True)
        self.details.setFont(QFont("monospace"))
        self.details.setPlaceholderText(PLUGIN_DETAILS_HINT)
        self.spec_table = QTableWidget(0, len(SPEC_COLUMNS))
        self.spec_table.setObjectName("spec_table")
        self.spec_table.setHorizontalHeaderLabels(SPEC_COLUMNS)
        self.spec_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.spec_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.spec_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.spec_table.setSortingEnabled(False)
        self.spec_table.verticalHeader().setVisible(False)
        self.spec_table.setWordWrap(False)
        # One line per spec: ~130 of them should not need a page of scrolling each.
        self.spec_table.verticalHeader().setDefaultSectionSize(
            self.spec_table.fontMetrics().height() + 8
        )
        spec_header = self.spec_table.horizontalHeader()
        spec_header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        spec_header.setSectionResizeMode(len(SPEC_COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.spec_table.itemChanged.connect(self._spec_item_changed)
        self.spec_table.itemSelectionChanged.connect(self._show_spec_details)
        self.status_filter = QComboBox()
        self.status_filter.setObjectName("spec_status_filter")
        for text, value in SPEC_FILTERS:
            self.status_filter.addItem(text, value)
        self.status_filter.currentIndexChanged.connect(self._fill_specs)
        self.spec_search = QLineEdit()
        self.spec_search.setObjectName("spec_filter_text")
        self.spec_search.setPlaceholderText("Filter by name, label, plugin or reason…")
        self.spec_search.setClearButtonEnabled(True)
        self.spec_search.textChanged.connect(self._fill_specs)
        self.spec_count = QLabel()
        self.spec_count.setObjectName("spec_count")
        filters = QHBoxLayout()
        filters.addWidget(QLabel("Show:"))
        filters.addWidget(self.status_filter)
        filters.addWidget(self.spec_search, 1)
        filters.addWidget(self.spec_count)
        spec_page = QWidget()
        spec_layout = QVBoxLayout(spec_page)
        spec_layout.setContentsMargins(0, 4, 0, 0)
        spec_layout.addLayout(filters)
        spec_layout.addWidget(self.spec_table, 1)

        self.tabs = QTabWidget()
        self.tabs.setObjectName("plugin_tabs")
        self.tabs.addTab(self.table, "Plugins")
        self.tabs.addTab(spec_page, "Optimizers, losses && schedules")
        self.tabs.currentChanged.connect(self._tab_changed)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.tabs)
        splitter.addWidget(self.details)
        splitter.setSizes([420, 110])

        self.progress = QProgressBar()
        self.progress.setObjectName("selftest_progress")
        self.progress.setTextVisible(True)
        self.progress.setVisible(False)
        self.task: HostTask | None = None

        self.approve_button = QPushButton("&Approve and load")
        self.remove_button = QPushButton("&Remove")
        self.install_file_button = QPushButton("Install from &file…")
        self.install_package_button = QPushButton("Install &package…")
        self.uninstall_button = QPushButton("&Uninstall package…")
        self.uninstall_button.setToolTip("pip uninstall the package the selected plugin came from")
        self.uninstall_button.clicked.connect(self._uninstall_selected)
        self.approve_button.clicked.connect(self._approve_selected)
        self.remove_button.clicked.connect(self._remove_selected)
        self.install_file_button.clicked.connect(self._install_file)
        self.install_package_button.clicked.connect(self._install_package)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        for button in (
            self.approve_button,
            self.remove_button,
            self.uninstall_button,
            self.install_file_button,
            self.install_package_button,
        ):
            row.addWidget(button)
        row.addStretch(1)
        row.addWidget(buttons)

        layout = QVBoxLayout(self)
        layout.addWidget(self.warning_label)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.progress)
        layout.addLayout(row)
        self.reload()

    @property
    def host(self) -> PluginHost:
        return _host(self.window_)

    def names(self) -> list[str]:
        """The record key of each row, in order."""
        return [self._name_at(r) for r in range(self.table.rowCount())]

    def _name_at(self, row: int) -> str:
        item = self.table.item(row, 1)
        if item is None:  # reload() fills every cell of a row before anything reads it
            raise LookupError(f"row {row} of the plugin table has no name cell")
        return item.data(Qt.ItemDataRole.UserRole)

    def row_of(self, name: str) -> int:
        return self.names().index(name)

    def reload(self) -> None:
        """Rebuild the table from the host (after any change)."""
        selected = self.selected_name()
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        for key, record in self.host.records.items():
            r = self.table.rowCount()
            self.table.insertRow(r)
            enabled = QTableWidgetItem()
            can_toggle = record.status in ("loaded", "disabled", "failed") and key == record.name
            enabled.setFlags(
                Qt.ItemFlag.ItemIsSelectable
                | Qt.ItemFlag.ItemIsEnabled
                | (Qt.ItemFlag.ItemIsUserCheckable if can_toggle else Qt.ItemFlag.NoItemFlags)
            )
            enabled.setCheckState(
                Qt.CheckState.Unchecked if record.status == "disabled" else Qt.CheckState.Checked
            )
            status = STATUS_TEXT.get(record.status, record.status)
            if record.rejected:
                status += f", {len(record.rejected)} rejected"
            cells = [
                enabled,
                QTableWidgetItem(record.name),
                QTableWidgetItem(", ".join(record.provides) or "–"),
                QTableWidgetItem(record.version or "–"),
                QTableWidgetItem(record.source),
                QTableWidgetItem(status),
            ]
            cells[1].setData(Qt.ItemDataRole.UserRole, key)
            tip = record.error or record.location
            for c, item in enumerate(cells):
                item.setToolTip(tip)
                self.table.setItem(r, c, item)
            if record.error:
                color = (
                    Qt.GlobalColor.darkRed
                    if record.status in ("failed", "untrusted")
                    else Qt.GlobalColor.darkYellow
                )
                cells[5].setForeground(color)
        self.table.blockSignals(False)
        warnings = list(self.host.warnings)
        self.warning_label.setText("\n".join(warnings))
        self.warning_label.setVisible(bool(warnings))
        if selected in self.names():
            self.table.selectRow(self.row_of(selected))
        self._show_details()
        self._fill_specs()

    # ----- the specs tab ------------------------------------------------------------------
    def spec_rows(self) -> list[SpecStatus]:
        """The specs the table shows now (after the filters), in order."""
        return list(self._shown_specs)

    def _fill_specs(self, *_args) -> None:
        wanted = self.status_filter.currentData() or ""
        needle = self.spec_search.text().strip().lower()
        every = self.host.spec_statuses()
        shown = [
            s
            for s in every
            if (not wanted or s.status == wanted)
            and (
                not needle
                or needle in f"{s.name}\n{s.label}\n{s.plugin}\n{s.reason}\n{s.kind}".lower()
            )
        ]
        self._shown_specs = shown
        table = self.spec_table
        table.blockSignals(True)
        table.setUpdatesEnabled(False)
        table.setRowCount(len(shown))
        colours = {
            "offered": None,
            "refused": Qt.GlobalColor.darkRed,
            "disabled": Qt.GlobalColor.darkGray,
        }
        for r, spec in enumerate(shown):
            check = QTableWidgetItem()
            toggle = spec.status != "refused"
            check.setFlags(
                Qt.ItemFlag.ItemIsSelectable
                | Qt.ItemFlag.ItemIsEnabled
                | (Qt.ItemFlag.ItemIsUserCheckable if toggle else Qt.ItemFlag.NoItemFlags)
            )
            if toggle:  # a refused spec has no switch: its self-test decides
                check.setCheckState(
                    Qt.CheckState.Unchecked if spec.status == "disabled" else Qt.CheckState.Checked
                )
            check.setData(Qt.ItemDataRole.UserRole, spec.key)
            seconds = "–" if spec.seconds is None else f"{spec.seconds * 1000:.0f} ms"
            cells = [
                check,
                QTableWidgetItem(spec.name),
                QTableWidgetItem(spec.label),
                QTableWidgetItem(spec.kind),
                QTableWidgetItem(spec.plugin),
                QTableWidgetItem(spec.status),
                QTableWidgetItem(seconds),
                QTableWidgetItem(spec.reason),
            ]
            if spec.reason:
                for item in cells:
                    item.setToolTip(spec.reason)
            colour = colours[spec.status]
            if colour is not None:
                cells[5].setForeground(colour)
            for c, item in enumerate(cells):
                table.setItem(r, c, item)
        table.setUpdatesEnabled(True)
        table.blockSignals(False)
        counts = {k: sum(1 for s in every if s.status == k) for k in colours}
        self.spec_count.setText(
            f"{len(shown)} shown · {counts['offered']} offered, {counts['refused']} refused, "
            f"{counts['disabled']} disabled"
        )

    @Slot(int)
    def _tab_changed(self, index: int) -> None:
        if index == 0:
            self.details.setPlaceholderText(PLUGIN_DETAILS_HINT)
            self._show_details()
        else:
            self.details.setPlaceholderText(
                "Select a spec to see why it is refused, and its self-test time. Untick a spec "
                "to stop offering it (its plugin stays loaded)."
            )
            self._show_spec_details()

    @Slot()
    def _show_spec_details(self) -> None:
        rows = self.spec_table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self._shown_specs):
            self.details.clear()
            return
        spec = self._shown_specs[rows[0].row()]
        seconds = "not run" if spec.seconds is None else f"{spec.seconds * 1000:.1f} ms"
        lines = [
            f"{spec.kind.capitalize()}: {spec.label} ({spec.name})",
            f"Plugin:    {spec.plugin}",
            f"Status:    {spec.status}",
            f"Self-test: {seconds}",
        ]
        if spec.reason:
            lines += ["", f"Reason: {spec.reason}"]
        self.details.setPlainText("\n".join(lines))

    @Slot(QTableWidgetItem)
    def _spec_item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() != 0:
            return
        key = item.data(Qt.ItemDataRole.UserRole)
        self.set_spec_enabled(key, item.checkState() == Qt.CheckState.Checked)

    def set_spec_enabled(self, key: str, enabled: bool) -> None:
        """Offer or hold back one spec (``kind:name``) now, and remember the choice.

        Enabling may self-test it: that runs off the GUI thread.
        """
        kind, name = key.split(":", 1)
        settings = _settings()
        settings.set_spec_enabled(key, enabled)
        settings.save()
        if enabled:
            self.run_host_task(lambda: self.host.enable_spec(kind, name))
        else:
            self.host.disable_spec(kind, name)
            _refresh_window(self.window_)
            self.reload()

    # ----- host work off the GUI thread ---------------------------------------------------
    def run_host_task(self, fn: Callable[[], object]) -> HostTask | None:
        """Run ``fn`` (which may self-test) in a worker thread; refresh when it is done."""
        if self.task is not None:
            return None
        self.task = HostTask(self.host, fn, self)
        self.task.progress.connect(self._task_progress)
        self.task.finished_with.connect(self._task_finished)
        self._set_busy(True)
        return self.task.start()

    def _set_busy(self, busy: bool) -> None:
        self.tabs.setEnabled(not busy)
        for button in (
            self.approve_button,
            self.remove_button,
            self.uninstall_button,
            self.install_file_button,
            self.install_package_button,
        ):
            button.setEnabled(not busy)
        self.progress.setVisible(busy)
        self.progress.setRange(0, 0)
        self.progress.setFormat("Working…")

    @Slot(int, int, str)
    def _task_progress(self, done: int, total: int, plugin: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(_progress_text(done, total, plugin))

    @Slot(object, str)
    def _task_finished(self, result: object, error: str) -> None:
        from fmnist_gui.plugins.host import PluginRecord  # loaded long before: the host exists

        self.task = None
        self._set_busy(False)
        _refresh_window(self.window_)
        self.reload()
        if error:
            self.window_.append_log(f"Plugins: {error}")
            QMessageBox.warning(self, "Plugins", error)
        if isinstance(result, PluginRecord) and result.status == "failed":
            self.window_.append_log(f"Plugin {result.name} failed to load: {result.error}")

    def done(self, result: int) -> None:
        if self.task is not None:
            self.task.wait()  # never leave the host half-changed behind a closed dialog
            self.task = None
        super().done(result)

    def selected_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        return self._name_at(rows[0].row())

    @Slot()
    def _show_details(self) -> None:
        name = self.selected_name()
        record = self.host.records.get(name) if name else None
        self.approve_button.setEnabled(record is not None and record.status == "untrusted")
        self.remove_button.setEnabled(record is not None and record.removable)
        self.uninstall_button.setEnabled(
            name is not None and bool(self.host.distribution_of(name)) and self.task is None
        )
        if record is None:
            self.details.clear()
            return
        lines = [
            f"Plugin:   {record.name}",
            f"Source:   {record.source}",
            f"Location: {record.location}",
        ]
        if record.sha256:
            lines.append(f"SHA-256:  {record.sha256}")
        lines.append(f"Status:   {STATUS_TEXT.get(record.status, record.status)}")
        if record.provides:
            lines.append(f"Offers:   {', '.join(record.provides)}")
        for spec, reason in record.rejected.items():
            lines.append(f"Not offered: {spec}: {reason}")
        if record.error:
            lines += ["", f"Error: {record.error}"]
        if record.traceback and record.traceback != record.error:
            lines += ["", record.traceback.rstrip()]
        self.details.setPlainText("\n".join(lines))

    @Slot(QTableWidgetItem)
    def _item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() != 0:
            return
        name = self._name_at(item.row())
        self.set_enabled(name, item.checkState() == Qt.CheckState.Checked)

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Enable or disable plugin ``name`` now, and remember the choice.

        Enabling loads and self-tests it off the GUI thread (``self.task``).
        """
        settings = _settings()
        settings.set_enabled(name, enabled)
        settings.save()
        if enabled:
            self.run_host_task(lambda: self.host.enable(name))
            return
        self.host.disable(name)
        _refresh_window(self.window_)
        self.reload()

    @Slot()
    def _uninstall_selected(self) -> None:
        name = self.selected_name()
        dist = self.host.distribution_of(name) if name else ""
        if not dist:
            return
        dialog = uninstall_package(self.window_, dist)
        if dialog is not None:
            dialog.rescanned.connect(self.reload)

    @Slot()
    def _approve_selected(self) -> None:
        name = self.selected_name()
        record = self.host.records.get(name) if name else None
        if name is None or record is None or record.status != "untrusted":
            return
        if _consent(
            self,
            "Run this plugin?",
            Path(record.location),
            record.sha256,
            f"The plugin file {Path(record.location).name} {_why_untrusted(record)}. Load it?",
        ):
            approve(self.window_, name)
            _refresh_window(self.window_)
            self.reload()

    @Slot()
    def _remove_selected(self) -> None:
        name = self.selected_name()
        record = self.host.records.get(name) if name else None
        if name is None or record is None or not record.removable:
            return
        answer = QMessageBox.question(
            self,
            "Remove plugin?",
            f"Delete {record.location} and unload plugin {name}?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            installer.remove_file(
                record.name, folder=Path(record.location).parent, settings=_settings()
            )
        except installer.InstallError as exc:
            QMessageBox.warning(self, "Cannot remove plugin", str(exc))
            return
        self.host.remove(name)
        _refresh_window(self.window_)
        self.reload()

    @Slot()
    def _install_file(self) -> None:
        install_from_file(self.window_)
        self.reload()

    @Slot()
    def _install_package(self) -> None:
        dialog = open_package_installer(self.window_)
        dialog.rescanned.connect(self.reload)


# ----- Install package… ------------------------------------------------------------------
def open_package_installer(window: MainWindow) -> PackageInstallDialog:
    dialog = PackageInstallDialog(window)
    dialog.open()
    return dialog


class PackageInstallDialog(QDialog):
    """``python -m pip install TARGET`` in a QProcess, with live output and Cancel.

    After a successful install the host rescans its entry points in a worker
    thread (new specs are self-tested there, with progress): new plugins load
    at once; an upgrade of loaded code offers a restart. ``uninstall(dist)``
    runs ``pip uninstall`` the same way, and the rescan drops its plugins.
    ``extra_pip_args`` (e.g. ``--no-deps``) go before the target.
    """

    rescanned = Signal(object)  # the RescanReport
    install_finished = Signal(str)  # "installed", "failed" or "cancelled"

    KILL_AFTER_MS = 3000

    def __init__(self, window: MainWindow, extra_pip_args: list[str] | None = None) -> None:
        super().__init__(window)
        self.window_ = window
        self.extra_pip_args = list(extra_pip_args or [])
        self.outcome = ""
        self.report: RescanReport | None = None
        self.task: HostTask | None = None
        self._cancelled = False
        self._action = "install"
        self.setWindowTitle("Install plugin package")
        self.resize(720, 420)

        self.target_edit = QLineEdit()
        self.target_edit.setObjectName("package_target")
        self.target_edit.setPlaceholderText(
            "fmnist-nadam, a .whl or .tar.gz file, or a project folder"
        )
        wheel = QPushButton("&File…")
        wheel.clicked.connect(self._browse_file)
        folder = QPushButton("F&older…")
        folder.clicked.connect(self._browse_folder)
        top = QHBoxLayout()
        top.addWidget(QLabel("Package:"))
        top.addWidget(self.target_edit, 1)
        top.addWidget(wheel)
        top.addWidget(folder)

        self.output = QPlainTextEdit()
        self.output.setObjectName("pip_output")
        self.output.setReadOnly(True)
        self.output.setFont(QFont("monospace"))
        self.status_label = QLabel(f"pip runs for this app's Python: {sys.executable}")
        self.status_label.setWordWrap(True)

        self.install_button = QPushButton("&Install")
        self.install_button.setDefault(True)
        self.cancel_button = QPushButton("&Cancel")
        self.cancel_button.setEnabled(False)
        self.close_button = QPushButton("Close")
        self.install_button.clicked.connect(self.install)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)
        row = QHBoxLayout()
        row.addStretch(1)
        for b in (self.install_button, self.cancel_button, self.close_button):
            row.addWidget(b)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        self.progress = QProgressBar()
        self.progress.setObjectName("rescan_progress")
        self.progress.setVisible(False)
        layout.addWidget(self.output, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        layout.addLayout(row)

        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self.process.readyReadStandardOutput.connect(self._read_output)
        self.process.finished.connect(self._process_finished)
        self.process.errorOccurred.connect(self._process_error)
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self.process.kill)

    @property
    def running(self) -> bool:
        return self.process.state() != QProcess.ProcessState.NotRunning

    @property
    def busy(self) -> bool:
        """pip runs, or the rescan after it."""
        return self.running or self.task is not None

    @Slot()
    def _browse_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Wheel or sdist", "", "Python packages (*.whl *.tar.gz *.zip)"
        )
        if path:
            self.target_edit.setText(path)

    @Slot()
    def _browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Project folder")
        if path:
            self.target_edit.setText(path)

    @Slot()
    def install(self) -> None:
        """Check the target (a plugin package? pip there?) and run pip install."""
        try:
            argv = installer.pip_install_command(
                self.target_edit.text(), extra_args=self.extra_pip_args
            )
            target = Path(argv[-1])
            if target.exists():
                installer.plugin_entry_points(target)
            problem = installer.pip_problem()
            if problem:
                raise installer.InstallError(problem)
        except installer.InstallError as exc:
            QMessageBox.warning(self, "Cannot install", str(exc))
            return
        self._action = "install"
        self.start(argv)

    def uninstall(self, distribution: str) -> None:
        """Run ``pip uninstall -y DISTRIBUTION`` (already confirmed), then rescan."""
        try:
            argv = installer.pip_uninstall_command(distribution)
            problem = installer.pip_problem()
            if problem:
                raise installer.InstallError(problem)
        except installer.InstallError as exc:
            QMessageBox.warning(self, "Cannot uninstall", str(exc))
            return
        self.target_edit.setText(distribution)
        self._action = "uninstall"
        self.start(argv)

    def start(self, argv: list[str]) -> None:
        """Run ``argv`` (pip, normally) and stream its output."""
        if self.running:
            return
        self.output.clear()
        self.output.appendPlainText("$ " + " ".join(argv))
        self.outcome, self._cancelled = "", False
        self.install_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status_label.setText(
            ("Uninstalling…" if self._action == "uninstall" else "Installing…")
            + " (Cancel stops pip)"
        )
        self.process.start(argv[0], argv[1:])

    @Slot()
    def cancel(self) -> None:
        if not self.running:
            return
        self._cancelled = True
        self.status_label.setText("Cancelling…")
        self.process.terminate()  # SIGTERM lets pip clean up; kill if it lingers
        self._kill_timer.start(self.KILL_AFTER_MS)

    @Slot()
    def _read_output(self) -> None:
        # data() is typed bytes | bytearray | memoryview; bytes() gives one that decodes.
        text = bytes(self.process.readAllStandardOutput().data()).decode("utf-8", "replace")
        self.output.moveCursor(self.output.textCursor().MoveOperation.End)
        self.output.insertPlainText(text)
        self.output.ensureCursorVisible()

    @Slot(QProcess.ProcessError)
    def _process_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._finish("failed", f"Could not start pip: {self.process.errorString()}")

    @Slot(int, QProcess.ExitStatus)
    def _process_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._kill_timer.stop()
        self._read_output()
        if self._cancelled:
            self._finish(
                "cancelled",
                "Cancelled; pip may have left a partial install, run Install again to complete it.",
            )
        elif code != 0 or status != QProcess.ExitStatus.NormalExit:
            why = installer.explain_pip_failure(self.output.toPlainText())
            self._finish(
                "failed",
                f"pip failed (exit code {code}){': ' + why if why else ''}; see its output above.",
            )
        else:
            self._rescan()

    def _rescan(self) -> None:
        """Find what pip added or removed, in a worker thread (new specs get self-tested)."""
        host = _host(self.window_)
        self.status_label.setText("Looking for new plugins…")
        self.install_button.setEnabled(False)
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.task = HostTask(host, host.rescan, self)
        self.task.progress.connect(self._rescan_progress)
        self.task.finished_with.connect(self._rescanned)
        self.task.start()

    @Slot(int, int, str)
    def _rescan_progress(self, done: int, total: int, plugin: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(_progress_text(done, total, plugin))
        self.status_label.setText(_progress_text(done, total, plugin))

    @Slot(object, str)
    def _rescanned(self, report: object, error: str) -> None:
        self.task = None
        self.progress.setVisible(False)
        if error or report is None:
            _refresh_window(self.window_)
            self._finish("failed", f"pip finished, but looking for plugins failed: {error}")
            return
        self._after_install(report)  # type: ignore[arg-type]

    def _after_install(self, report: RescanReport) -> None:
        self.report = report
        _refresh_window(self.window_)
        if self._action == "uninstall":
            gone = [f"{r.name} ({', '.join(r.provides) or 'nothing'})" for r in report.removed]
            message = (
                ("Uninstalled. Removed plugins: " + "; ".join(gone))
                if gone
                else "Uninstalled, but none of the loaded plugins came from it."
            )
            self.output.appendPlainText("\n" + message)
            self.rescanned.emit(report)
            self._finish("uninstalled", message)
            return
        new = [f"{r.name} ({r.status}: {self._offers(r)})" for r in report.loaded]
        message = (
            ("Installed. New plugins: " + "; ".join(new))
            if new
            else "Installed, but no new fmnist_gui plugin was found in it (a package needs an "
            "entry point in the fmnist_gui group, see plugins/README.md)."
        )
        self.output.appendPlainText("\n" + message)
        for line in report.restart_needed:
            self.output.appendPlainText(line)
        self.rescanned.emit(report)
        self._finish("installed", message)
        if report.restart_needed:
            offer_restart(self.window_, "\n\n".join(report.restart_needed))

    @staticmethod
    def _offers(record: PluginRecord) -> str:
        """What a new plugin offers, short enough for a zoo of 100 specs."""
        if not record.provides:
            return record.error or "nothing"
        if len(record.provides) <= 8:
            return ", ".join(record.provides)
        refused = f", {len(record.rejected)} refused" if record.rejected else ""
        return f"{len(record.provides)} specs{refused}"

    def _finish(self, outcome: str, message: str) -> None:
        self.outcome = outcome
        self.status_label.setText(message)
        self.install_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.window_.append_log(f"{self._action.capitalize()} package: {message}")
        self.install_finished.emit(outcome)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        # Never leave pip running, or the host half-rescanned, behind a closed dialog.
        if self.task is not None:
            self.task.wait()
        if self.running:
            self.cancel()
            if not self.process.waitForFinished(self.KILL_AFTER_MS):
                self.process.kill()
                self.process.waitForFinished(self.KILL_AFTER_MS)
        super().closeEvent(event)

    def done(self, result: int) -> None:
        if self.busy:
            self.close()
        super().done(result)


def offer_restart(window: QWidget, reason: str) -> bool:
    """Explain why a restart is needed and restart the app if the user agrees."""
    answer = QMessageBox.question(
        window,
        "Restart needed",
        f"{reason}\n\nRestart fmnist-gui now? (Unsaved training is lost unless you save "
        "first; choose No to restart later.)",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    if answer != QMessageBox.StandardButton.Yes:
        return False
    if window.close():
        QProcess.startDetached(sys.executable, ["-m", "fmnist_gui", *sys.argv[1:]])
        return True
    return False
