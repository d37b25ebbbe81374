"""Plugins that exit, interrupt or kill the process, in the app: the window survives each.

The same real plugin files as ``tests/plugins/test_plugin_faults.py``; the app
loads them itself (its loader, the trial process, the self-test cache) or
trains with them. In every case the window stays usable, names the plugin and
closes within 5 s.
"""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QMessageBox

from fmnist_gui.plugins.host import get_plugin_manager
from fmnist_gui.qt.app import build_app
from tests.plugins.test_plugin_faults import (
    AT_IMPORT,
    BASE_EXCEPTIONS,
    IN_HOOK,
    IN_STEP,
    source,
)
from tests.support.plugin_fixtures import forgetting_plugin_modules, write_plugin
from tests.support.qt_helpers import close_window

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CLOSE_WITHIN_MS = 5000
FAULTS = {"SystemExit": "import sys; sys.exit(3)", "KeyboardInterrupt": "raise KeyboardInterrupt"}


@pytest.fixture(autouse=True)
def _forget_plugin_modules():
    with forgetting_plugin_modules():
        yield


@pytest.fixture
def dialogs(monkeypatch):
    """Every critical/warning message box the app shows, as (title, text)."""
    shown: list[tuple[str, str]] = []

    def record(parent, title, text, *args, **kwargs):
        shown.append((title, text))
        return QMessageBox.StandardButton.Ok

    monkeypatch.setattr(QMessageBox, "critical", staticmethod(record))
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(record))
    return shown


def open_loading_itself(qtbot, root, folder, settings):
    """The app as ``fmnist-gui --plugin-dir FOLDER`` starts it: its loader loads the plugins."""
    app = build_app(root, plugin_dirs=[folder], settings=settings)
    qtbot.addWidget(app.window)
    app.window.show()
    app.start_loading()
    qtbot.waitUntil(lambda: app.window.state == "idle", timeout=120_000)
    return app


def assert_usable_then_closes(qtbot, app) -> None:
    assert app.window.actions["start"].isEnabled()
    assert app.training.panel.optimizer_combo.count() >= 3  # the built-ins are offered
    app.window.close()
    box = app.checkpoints.quit_box
    if box is not None:  # a model was trained: "Save it before quitting?" Discard
        box.button(QMessageBox.StandardButton.Discard).click()
    qtbot.waitUntil(lambda: not app.window.isVisible(), timeout=CLOSE_WITHIN_MS)


@pytest.mark.parametrize("where", ["import", "hook"])
@pytest.mark.parametrize("exception", FAULTS)
def test_exit_or_interrupt_while_loading(qtbot, tmp_path, tiny_root, settings, where, exception):
    folder = tmp_path / "plugins"
    template = AT_IMPORT if where == "import" else IN_HOOK
    write_plugin(folder, "rogue", source(template, FAULTS[exception]))
    app = open_loading_itself(qtbot, tiny_root, folder, settings)
    try:
        log = app.window.log.toPlainText()
        assert "Plugin rogue failed to load" in log
        assert BASE_EXCEPTIONS[exception][1] in log
        assert app.backend.data is not None  # the dataset is not blamed
        assert_usable_then_closes(qtbot, app)
    finally:
        close_window(qtbot, app)


def test_os_exit_at_import_is_caught_by_the_trial_process(qtbot, tmp_path, tiny_root, settings):
    folder = tmp_path / "plugins"
    write_plugin(folder, "killer", "import os\nos._exit(7)\n")
    app = open_loading_itself(qtbot, tiny_root, folder, settings)
    try:
        log = app.window.log.toPlainText()
        assert "Plugin killer failed to load" in log
        assert "exit code 7" in log
        assert_usable_then_closes(qtbot, app)
    finally:
        close_window(qtbot, app)


@pytest.mark.parametrize("exception", FAULTS)
def test_exit_or_interrupt_in_step_ends_the_run_not_the_app(
    qtbot, tmp_path, tiny_root, settings, dialogs, exception
):
    folder = tmp_path / "plugins"
    write_plugin(folder, "rogue", source(IN_STEP, FAULTS[exception], name="rogue_step"))
    plugins = get_plugin_manager([folder])
    assert "rogue_step" in plugins.optimizers
    app = build_app(tiny_root, plugins=plugins, settings=settings)
    qtbot.addWidget(app.window)
    app.window.show()
    app.start_loading()
    try:
        qtbot.waitUntil(lambda: app.window.state == "idle", timeout=60_000)
        panel = app.training.panel
        panel.optimizer_combo.setCurrentIndex(panel.optimizer_combo.findData("rogue_step"))
        panel.batch_spin.setValue(4)
        app.window.actions["start"].trigger()
        qtbot.waitUntil(lambda: app.window.state == "running", timeout=10_000)
        qtbot.waitUntil(
            lambda: app.window.state == "idle" and app.training.job is None, timeout=60_000
        )
        assert dialogs, "the failure was not shown"
        title, text = dialogs[-1]
        assert title == "Training failed"
        assert "rogue" in text
        assert BASE_EXCEPTIONS[exception][1] in text
        assert_usable_then_closes(qtbot, app)
    finally:
        close_window(qtbot, app)
