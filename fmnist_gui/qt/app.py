"""``fmnist-gui``: start the desktop app. This module is the composition root.

``build_app`` makes the window shell and the feature controllers, each with
typed references to what it needs, and wires what they share: the close guards,
in the order they are asked, and the steps that follow the backend's loading.

The window is shown before torch (and pyqtgraph) are imported: both take
seconds to import, so they load after the first paint (``App.start_loading``)
while the window already tells the user what it is doing. Start (F5) pressed
while loading is queued and runs once loaded; quitting while loading is
immediate (the loader is cancelled and not waited for). Once ready, the app
pays torch.optim's one-off import cost in the background (``warm_up``), which
the cached plugin self-tests no longer pay at start-up.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PySide6.QtCore import QSettings

    from fmnist_gui.plugins.host import PluginHost
    from fmnist_gui.qt.features.checkpoints.controller import CheckpointController
    from fmnist_gui.qt.features.compare.controller import CompareController
    from fmnist_gui.qt.features.insight.controller import InsightController
    from fmnist_gui.qt.features.plugins.dialogs import PluginMenu
    from fmnist_gui.qt.features.runs.controller import RunsController
    from fmnist_gui.qt.features.sweep.controller import SweepController
    from fmnist_gui.qt.features.sweep.view import SweepView
    from fmnist_gui.qt.features.training.controller import TrainingController
    from fmnist_gui.qt.infra.worker import Job
    from fmnist_gui.qt.shell.backend import Backend
    from fmnist_gui.qt.shell.window import MainWindow

_LAUNCHED = time.perf_counter()


#: How often the GUI thread runs the garbage collections that are due (see collector).
COLLECT_EVERY_MS = 250


def build_parser() -> argparse.ArgumentParser:
    from fmnist_gui import __version__
    from fmnist_gui.system.options import add_data_options, add_plugin_dir_option

    p = argparse.ArgumentParser(
        prog="fmnist-gui",
        description="Train the PyTorch tutorial's Fashion-MNIST network in a desktop app.",
    )
    add_data_options(
        p,
        data_dir_help="dataset root (default: the last folder used, else the app's data folder)",
        no_download=False,
    )
    add_plugin_dir_option(p)
    p.add_argument("--version", action="version", version=f"fmnist-gui {__version__}")
    return p


def _seconds_since_start() -> float:
    """Seconds since this process started (Linux), else since this module was imported."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _LAUNCHED


class _FirstPaint:
    """Calls ``callback`` once, after ``widget``'s first paint event."""

    def __init__(self, widget, callback) -> None:
        from PySide6.QtCore import QEvent, QObject

        outer = self

        class Filter(QObject):
            def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
                if event.type() == QEvent.Type.Paint and outer.callback is not None:
                    callback, outer.callback = outer.callback, None
                    widget.removeEventFilter(self)
                    callback()
                return False

        self.callback = callback
        self.filter = Filter()
        widget.installEventFilter(self.filter)


class App:
    """The window shell and its features, as ``build_app`` wired them."""

    def __init__(
        self,
        window: MainWindow,
        training: TrainingController,
        insight: InsightController,
        compare: CompareController,
        runs: RunsController,
        plugin_menu: PluginMenu,
        checkpoints: CheckpointController,
        sweep: SweepController,
    ) -> None:
        self.window = window
        self.backend: Backend = window.backend
        self.training = training
        self.insight = insight
        self.compare = compare
        self.runs = runs
        self.plugin_menu = plugin_menu
        self.checkpoints = checkpoints
        self.sweep = sweep
        # Each guard may keep the window open; the first that holds ends the round.
        # Unsaved training is asked about before a race is stopped for nothing;
        # while training runs, the training's own question comes first (the
        # checkpoint guard steps aside then). A race is asked about (training's
        # guard) before the Compare guard stops it. A running sweep is asked about last.
        window.close_guards[:] = [checkpoints, training, compare, sweep]
        window.backend.loaded.connect(self._on_backend_loaded)
        window.backend.progress.connect(self._on_progress)
        #: Whether Ready starts torch.optim's warm-up in the background (``main`` sets it).
        self.warm_up = False
        self.warm_up_job: Job | None = None
        #: How many warm-ups Ready has started (one per launch).
        self.warm_ups_started = 0
        #: Start was asked for (F5) before the app was ready: it runs once loaded.
        self.start_queued = False
        self._queue_start = self._early_start_shortcut()

    def _early_start_shortcut(self):
        from PySide6.QtGui import QKeySequence, QShortcut

        # The Start action is disabled while loading, so its F5 never fires then;
        # this shortcut takes F5 until loading ends, then goes away (no ambiguity).
        shortcut = QShortcut(QKeySequence(self.window.actions["start"].shortcut()), self.window)
        shortcut.activated.connect(self.queue_start)
        return shortcut

    def queue_start(self) -> None:
        """Start training as soon as loading is done; says so in the status bar."""
        if self.window.state != "loading":
            return
        self.start_queued = True
        self.window.statusBar().showMessage(
            "Training starts as soon as PyTorch, the plugins and the dataset are loaded…"
        )

    def _on_progress(self, text: str) -> None:
        if self.start_queued:
            text = f"{text} Training starts once loaded."
        self.window.statusBar().showMessage(text)

    def start_loading(self) -> None:
        """The slow imports, after the window's first paint: pyqtgraph here, torch in a worker.

        If the last start died while loading plugins, the user is asked about
        safe mode first (built-ins only).
        """
        from fmnist_gui.qt.features.plugins.safe_mode import choose_safe_mode

        self.training.build_plots()
        safe_mode = self.backend.plugins is None and choose_safe_mode(self.window)
        self._on_progress("Loading PyTorch, the plugins and the dataset…")
        self.backend.start_loading(safe_mode=safe_mode)

    def _on_backend_loaded(self) -> None:
        self._queue_start.setEnabled(False)
        if self.window.state != "idle":  # closed while loading
            return
        self._build_tabs()
        plugins = self.backend.plugins
        if plugins is not None and plugins.safe_mode:
            from fmnist_gui.qt.features.plugins.dialogs import open_manager

            open_manager(self.window)
        # Approving a plugin may bring back the optimizer that a recovered
        # autosave needs: ask first, then offer the recovery.
        self.plugin_menu.ask_about_untrusted()
        self.checkpoints.offer_recovery()
        if self.warm_up:
            self._start_warm_up()
        if self.start_queued:
            self.start_queued = False
            self.window.actions["start"].trigger()

    def _build_tabs(self) -> None:
        """The tabs that need torch and pyqtgraph, in their order after Training."""
        tabs = self.window.tabs
        for widget, title in self.insight.build_views():
            tabs.addTab(widget, title)
        tabs.addTab(self.compare.build_view(), "Compare")
        tabs.addTab(self.runs.build_view(self.export_targets), "Runs")
        # The Sweep tab's engine (optuna) takes a third of a second to import: its
        # tab is built the first time it is shown, not before Ready.
        from PySide6.QtWidgets import QWidget

        placeholder = QWidget()
        placeholder.setObjectName("sweep_placeholder")
        tabs.addTab(placeholder, "S&weep")
        tabs.currentChanged.connect(self._build_sweep_when_shown)

    def _build_sweep_when_shown(self, index: int) -> None:
        widget = self.window.tabs.widget(index)
        if widget is not None and widget.objectName() == "sweep_placeholder":
            self.show_sweep()

    def show_sweep(self) -> SweepView:
        """Show the Sweep tab, building it first if it never was; returns its view."""
        tabs = self.window.tabs
        if not self.sweep.ready:
            for index in range(tabs.count()):
                placeholder = tabs.widget(index)
                if placeholder is not None and placeholder.objectName() == "sweep_placeholder":
                    view = self.sweep.build_view()
                    tabs.blockSignals(True)  # one tab swapped for another: not a change of tab
                    tabs.insertTab(index, view, "S&weep")
                    tabs.removeTab(index + 1)
                    tabs.blockSignals(False)
                    placeholder.deleteLater()
                    break
        tabs.setCurrentWidget(self.sweep.view)
        return self.sweep.view

    def export_targets(self) -> list[list[Any]]:
        """The plots that "Export plots" composes, in rows as on screen.

        The Training tab's plots when it has data, then the Compare tab's overlays
        when a run is shown; none before any run.
        """
        rows: list[list[Any]] = []
        training = self.training.plots
        if training is not None and training.point_count:
            rows += [[training.loss_plot], [training.test_loss_plot, training.accuracy_plot]]
        if self.runs.runs.visible() and self.compare.ready:
            overlay = self.compare.race_view.plots
            overlay.redraw(force=True)
            rows.append([overlay.loss_plot, overlay.accuracy_plot])
        return rows

    def _start_warm_up(self) -> None:
        from fmnist_gui.qt.infra.worker import FunctionWorker, Job, warm_up_optimizers

        self.warm_ups_started += 1
        self.warm_up_job = Job(FunctionWorker(warm_up_optimizers), self.window)
        self.warm_up_job.done.connect(self._on_warm_up_done)
        self.warm_up_job.start()

    def _on_warm_up_done(self) -> None:
        self.warm_up_job = None

    def shutdown(self, timeout_ms: int = 5000, *, abandon_loading: bool = False) -> None:
        """Stop and join every worker thread (after the event loop ends).

        ``abandon_loading``: do not wait for the loader or the warm-up, which
        only import and read (the process is about to ``os._exit``).
        """
        self.training.shutdown(timeout_ms)
        self.compare.shutdown(timeout_ms)
        self.insight.shutdown(timeout_ms)
        self.sweep.shutdown(timeout_ms)
        self.checkpoints.wait_for_autosave(timeout_ms)
        if abandon_loading:
            # Nobody is left to watch the plugin trial processes (never imported
            # here: the loader may hold the import lock).
            probe = sys.modules.get("fmnist_gui.plugins.probe")
            if probe is not None:
                probe.kill_trials()
            return
        self.backend.wait(timeout_ms)
        if self.warm_up_job is not None:
            self.warm_up_job.wait(timeout_ms)


def build_app(
    data_dir: Path | None = None,
    *,
    plugins: PluginHost | None = None,
    plugin_dirs: list[Path] | None = None,
    settings: QSettings | None = None,
) -> App:
    """Build the window and its features; nothing heavy is imported (see ``start_loading``)."""
    from fmnist_gui.analysis.runs import RunList
    from fmnist_gui.qt.features.checkpoints.controller import CheckpointController
    from fmnist_gui.qt.features.compare.controller import CompareController
    from fmnist_gui.qt.features.insight.controller import InsightController
    from fmnist_gui.qt.features.plugins.dialogs import PluginMenu
    from fmnist_gui.qt.features.runs.controller import RunsController
    from fmnist_gui.qt.features.sweep.controller import SweepController
    from fmnist_gui.qt.features.training.controller import TrainingController
    from fmnist_gui.qt.shell.backend import Backend
    from fmnist_gui.qt.shell.window import MainWindow, make_settings

    settings = settings if settings is not None else make_settings()
    backend = Backend(settings, data_dir, plugins=plugins, plugin_dirs=plugin_dirs)
    window = MainWindow(backend, settings)
    backend.setParent(window)
    training = TrainingController(window)  # first: its tab is the first one
    insight = InsightController(window, training)
    run_list = RunList()  # the Runs and Compare tabs show the same runs
    runs = RunsController(window, training, run_list)
    compare = CompareController(window, training, run_list)
    plugin_menu = PluginMenu(window)
    checkpoints = CheckpointController(window, training, extras=[runs])
    sweep = SweepController(window, training)

    def use_settings(config: dict) -> None:
        # A past run's settings in the form; the next Start after Reset trains them.
        from fmnist_gui.training.config import TrainConfig

        training.panel.set_config(TrainConfig.from_dict(config))
        window.tabs.setCurrentIndex(0)

    runs.use_settings_requested.connect(use_settings)
    sweep.use_settings_requested.connect(use_settings)
    # A race and a sweep each use every CPU: one waits for the other (training is
    # blocked by either, through the training controller's blockers).
    sweep.add_blocker(
        lambda: (
            "a race is running in the Compare tab; stop it there or let it finish"
            if compare.running
            else ""
        )
    )
    compare.add_blocker(
        lambda: "a sweep is running in the Sweep tab; stop it there first" if sweep.running else ""
    )
    sweep.running_changed.connect(lambda _running: compare.refresh_blocked())
    return App(window, training, insight, compare, runs, plugin_menu, checkpoints, sweep)


def _report_ready(fmnist: App) -> None:
    """The "ready after" line of FMNIST_GUI_REPORT_STARTUP, with the loading phases."""
    if fmnist.backend.cancelled:
        return
    phases = " ".join(f"{k}={v:.3f}" for k, v in fmnist.backend.phases.items())
    plugins = fmnist.backend.plugins
    selftests = getattr(plugins, "selftests_run", 0)
    print(
        f"fmnist-gui: ready after {_seconds_since_start():.3f} s "
        f"(phases: {phases}; self-tests run: {selftests})",
        flush=True,
    )


def app_icon():
    from importlib.resources import as_file, files

    from PySide6.QtGui import QIcon

    with as_file(files("fmnist_gui.resources") / "fmnist-gui.svg") as path:
        return QIcon(str(path))


def _collect_in_gui_thread(window: MainWindow) -> None:
    """At Ready: freeze start-up's objects, then collect due garbage from this thread's timer."""
    from PySide6.QtCore import QTimer

    from fmnist_gui.system import collector

    if window.findChild(QTimer, "collector_timer") is not None:
        return
    collector.freeze_start_up()
    timer = QTimer(window)  # the window owns it
    timer.setObjectName("collector_timer")
    timer.timeout.connect(collector.collect_due)
    timer.start(COLLECT_EVERY_MS)


def main(argv: list[str] | None = None) -> int:
    from fmnist_gui.system import collector

    # Cyclic garbage is collected by the GUI thread only, never by a worker thread
    # (where destroying Qt objects can deadlock), and not at all until loaded: see collector.
    collector.stop_automatic()
    args, qt_args = build_parser().parse_known_args(argv)

    from fmnist_gui.qt.infra import preflight

    # Before any Qt module loads: a missing X11 library makes Qt abort the process.
    problem = preflight.check()
    if problem is not None:
        collector.restore_automatic()
        print(problem.message, file=sys.stderr)
        return 1

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from fmnist_gui.qt.shell.window import SETTINGS_APP, SETTINGS_ORG

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication([sys.argv[0], *qt_args])
    app.setOrganizationName(SETTINGS_ORG)
    app.setApplicationName(SETTINGS_APP)
    app.setApplicationDisplayName("Fashion-MNIST Trainer")
    app.setDesktopFileName("fmnist-gui")
    app.setWindowIcon(app_icon())

    fmnist = build_app(args.data_dir, plugin_dirs=args.plugin_dir)
    fmnist.warm_up = True
    window = fmnist.window
    # Connected before the ready report: the report's line comes after the collector is back.
    fmnist.backend.loaded.connect(lambda: _collect_in_gui_thread(fmnist.window))
    report = bool(os.environ.get("FMNIST_GUI_REPORT_STARTUP"))
    if report:
        fmnist.backend.loaded.connect(lambda: _report_ready(fmnist))
    # The slow imports start once the window has painted itself for the first time.
    first_paint = _FirstPaint(window.statusBar(), lambda: QTimer.singleShot(0, shown))
    window.show()

    def shown() -> None:
        # FMNIST_GUI_REPORT_STARTUP: benchmarks/bench_gui.py reads this line.
        if report:
            print(
                f"fmnist-gui: visible after {_seconds_since_start():.3f} s "
                f"(torch imported: {'torch' in sys.modules})",
                flush=True,
            )
        fmnist.start_loading()

    status = app.exec()
    del first_paint
    full_teardown = bool(os.environ.get("FMNIST_GUI_FULL_TEARDOWN"))
    # Worker threads are joined here (settings were saved on close), except a
    # loader still importing when the user quit: nothing of it needs saving.
    fmnist.shutdown(abandon_loading=not full_teardown)
    if full_teardown:
        return status
    # Tearing the interpreter down with torch loaded takes 1.5-3.5 s on a busy
    # 2-core machine (measured), past the 2 s a closing window may take; nothing
    # is left to flush but the standard streams, so leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
