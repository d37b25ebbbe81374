"""Start-up: Start pressed before Ready, quitting while loading, the background warm-up."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from fmnist_gui.qt.app import build_app
from tests.support.plugin_fixtures import good_optimizer_source, write_plugin
from tests.support.qt_helpers import close_window

# Generous against the 2 s goal (a busy machine), far below the 60 s the loader is stuck.
QUIT_BOUND_S = 10

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def activate(qtbot, window) -> None:
    """Make ``window`` the active one: shortcuts reach only the active window."""
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5000)


def test_f5_before_ready_starts_training_once_loaded(qtbot, tiny_root, plugins, settings):
    app = build_app(tiny_root, plugins=plugins, settings=settings)
    qtbot.addWidget(app.window)
    app.window.show()
    try:
        activate(qtbot, app.window)
        app.start_loading()
        assert app.window.state == "loading"
        assert not app.window.actions["start"].isEnabled()
        qtbot.keyClick(app.window, Qt.Key.Key_F5)
        assert app.start_queued
        assert "Training starts" in app.window.statusBar().currentMessage()
        app.training.panel.epochs_spin.setValue(1)
        qtbot.waitUntil(lambda: app.training.trainer is not None, timeout=60_000)
        assert not app.start_queued
        qtbot.waitUntil(
            lambda: app.window.state == "idle" and app.training.job is None, timeout=60_000
        )
        assert app.training.trainer.epochs_done == 1
    finally:
        close_window(qtbot, app)


def test_f5_after_ready_is_the_start_action_alone(qtbot, app):
    """Once loaded, the early shortcut is gone: F5 is the Start action, never queued."""
    activate(qtbot, app.window)
    with qtbot.waitSignal(app.window.state_changed, timeout=10_000):
        qtbot.keyClick(app.window, Qt.Key.Key_F5)
    assert app.window.state == "running"
    assert not app.start_queued
    app.window.actions["stop"].trigger()
    qtbot.waitUntil(lambda: app.window.state == "idle", timeout=30_000)


def test_ready_starts_the_warm_up_in_the_background(qtbot, tiny_root, plugins, settings):
    app = build_app(tiny_root, plugins=plugins, settings=settings)
    app.warm_up = True
    qtbot.addWidget(app.window)
    app.window.show()
    try:
        app.start_loading()
        qtbot.waitUntil(lambda: app.window.state == "idle", timeout=60_000)
        assert app.warm_ups_started == 1
        qtbot.waitUntil(lambda: app.warm_up_job is None, timeout=60_000)
    finally:
        close_window(qtbot, app)


def test_warm_up_imports_what_the_first_optimizer_would():
    # A fresh interpreter: in this one, earlier tests have imported everything.
    script = (
        "import sys, torch\n"
        "before = 'torch._dynamo' in sys.modules\n"
        "from fmnist_gui.qt.infra.worker import warm_up_optimizers\n"
        "warm_up_optimizers()\n"
        "print(before, 'torch._dynamo' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == ["False", "True"]


QUIT_DURING_LOADING = textwrap.dedent(
    """
    import os, sys, tempfile, time
    from pathlib import Path
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox
    import fmnist_gui.qt.app as app_module

    app = QApplication([sys.argv[0]])
    real_build = app_module.build_app

    def build(*args, **kwargs):
        fmnist = real_build(*args, **kwargs)

        def quit_when_loading():
            # Once the plugin trial process runs (its folder exists): the loader is stuck in it.
            trying = any(Path(tempfile.gettempdir()).glob("fmnist-probe-*"))
            if not (fmnist.backend.loading and trying):
                QTimer.singleShot(20, quit_when_loading)
                return
            print("quit asked", time.monotonic(), flush=True)
            fmnist.window.actions["quit"].trigger()

        QTimer.singleShot(0, quit_when_loading)
        return fmnist

    app_module.build_app = build
    sys.exit(app_module.main(sys.argv[1:]))
    """
)


SLOW_PLUGIN = """
import time
time.sleep(60)  # loading never ends while the test runs
"""


def test_quitting_while_loading_leaves_at_once(tmp_path, tiny_root):
    """A real app process: Quit while its loader is stuck in a plugin; it must not wait for it.

    The plugin's import takes 60 s (in the trial process too), so an app that
    waited for its loader would still be running long after the bound below.
    """
    folder = tmp_path / "plugins"
    write_plugin(folder, "slow", SLOW_PLUGIN)
    env = dict(os.environ)
    env.pop("FMNIST_GUI_FULL_TEARDOWN", None)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env.update(
        QT_QPA_PLATFORM="offscreen",
        FMNIST_GUI_HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "cfg"),
        TMPDIR=str(temp),
    )
    command = [sys.executable, "-c", QUIT_DURING_LOADING, "--data-dir", str(tiny_root)]
    command += ["--plugin-dir", str(folder)]
    child = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # the plugin trial process it started goes with it
    )
    try:
        asked = None
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("quit asked"):
                asked = time.monotonic()
                break
        assert asked is not None, "the app never reached loading"
        child.wait(timeout=QUIT_BOUND_S)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert child.returncode == 0
    assert not list(temp.glob("fmnist-probe-*")), "the plugin trial's folder was left behind"


def test_safe_mode_after_a_start_that_died_loading_plugins(
    qtbot, tmp_path, tiny_root, settings, monkeypatch
):
    """Asked before loading; Yes loads the built-ins only, then the plugin manager opens."""
    from fmnist_gui.qt.features.plugins.dialogs import PluginManagerDialog
    from tests.qt.features.test_plugin_safe_mode import leave_marker_of_a_dead_start

    folder = tmp_path / "plugins"
    write_plugin(folder, "my_adagrad", good_optimizer_source())
    leave_marker_of_a_dead_start("my_adagrad", str(folder / "my_adagrad.py"))
    asked = []

    def question(parent, title, text, *args):
        asked.append(title)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    app = build_app(tiny_root, plugin_dirs=[folder], settings=settings)
    qtbot.addWidget(app.window)
    app.window.show()
    try:
        app.start_loading()
        assert asked == ["Start in safe mode?"]
        qtbot.waitUntil(lambda: app.window.state == "idle", timeout=60_000)
        plugins = app.backend.plugins
        assert plugins.safe_mode
        assert "my_adagrad" not in plugins.optimizers
        assert plugins.records["my_adagrad"].status == "disabled"
        managers = app.window.findChildren(PluginManagerDialog)
        assert len(managers) == 1
        assert managers[0].isVisible()
        managers[0].close()
    finally:
        close_window(qtbot, app)


def test_the_window_is_built_without_the_slow_imports(tmp_path):
    # What build_app imports delays the first paint; torch, pyqtgraph and optuna
    # (the Sweep tab's engine) each take a good part of a second, so they load
    # after it (App.start_loading).
    script = (
        "import sys\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from fmnist_gui.qt.app import build_app\n"
        "fmnist = build_app()\n"
        "fmnist.window.show()\n"
        "print(sorted(m for m in ('torch', 'pyqtgraph', 'optuna', 'numpy') if m in sys.modules))\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "FMNIST_GUI_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


COLLECTOR_STATES = textwrap.dedent(
    """
    import gc, sys, threading
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication
    import fmnist_gui.qt.app as app_module

    collected_in = []
    kept = []

    class Cycle:
        def __init__(self):
            self.me = self

        def __del__(self):
            collected_in.append(threading.current_thread().name)

    def make_garbage():
        for _ in range(3):
            Cycle()  # unreachable at once, but only a collection frees a cycle
        kept.append([[] for _ in range(5000)])  # allocations enough to make a collection due

    def build(*args, **kwargs):
        fmnist = real_build(*args, **kwargs)
        print("loading", gc.isenabled(), flush=True)

        def ready():
            print("ready", gc.isenabled(), gc.get_freeze_count() > 100_000, flush=True)
            worker = threading.Thread(target=make_garbage, name="worker")
            worker.start()
            worker.join()
            QTimer.singleShot(0, wait_for_collection)

        def wait_for_collection():
            if not collected_in:
                QTimer.singleShot(50, wait_for_collection)
                return
            print("collected-in", *sorted(set(collected_in)), flush=True)
            fmnist.window.close()

        # On the next turn of the event loop: after every slot of "loaded" has run.
        fmnist.backend.loaded.connect(lambda: QTimer.singleShot(0, ready))
        return fmnist

    app = QApplication([sys.argv[0]])
    real_build = app_module.build_app
    app_module.build_app = build
    sys.exit(app_module.main(sys.argv[1:]))
    """
)


def test_garbage_is_collected_by_the_gui_thread_only_and_start_up_is_frozen(tmp_path, tiny_root):
    """A real app process: no automatic collection (none until Ready, then only the GUI
    thread's timer collects), start-up's objects frozen, and a worker thread's dead
    cycles collected in the GUI thread."""
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        FMNIST_GUI_HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "cfg"),
    )
    done = subprocess.run(
        [sys.executable, "-c", COLLECTOR_STATES, "--data-dir", str(tiny_root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    lines = [line.split() for line in done.stdout.splitlines()]
    assert ["loading", "False"] in lines, done.stdout + done.stderr
    assert ["ready", "False", "True"] in lines, done.stdout + done.stderr
    assert ["collected-in", "MainThread"] in lines, done.stdout + done.stderr
    assert done.returncode == 0
