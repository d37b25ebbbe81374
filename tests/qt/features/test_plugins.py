"""The Plugins menu offscreen: real window, real plugin files, real pip in a QProcess.

Dialogs that would block (QMessageBox.question/critical, QFileDialog) are
patched where the code looks them up; everything else is real.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox

from fmnist_gui.plugins.host import get_plugin_manager
from fmnist_gui.plugins.installer import PluginSettings
from fmnist_gui.qt.app import App
from fmnist_gui.qt.features.plugins import dialogs as plugin_dialogs
from fmnist_gui.qt.features.plugins.dialogs import PackageInstallDialog, PluginManagerDialog
from fmnist_gui.system.paths import user_plugin_dir
from tests.support import qt_helpers
from tests.support.plugin_fixtures import (
    forgetting_plugin_modules,
    good_optimizer_source,
    write_plugin,
)
from tests.support.qt_helpers import close_window

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
YES, NO = QMessageBox.StandardButton.Yes, QMessageBox.StandardButton.No


@pytest.fixture(autouse=True)
def _forget_plugin_modules():
    with forgetting_plugin_modules("fmnist_nadam"):
        yield


@pytest.fixture
def questions(monkeypatch):
    """Answer every QMessageBox.question with the next queued answer (default Yes)."""
    asked: list[str] = []
    answers: list = []

    def question(parent, title, text, *args, **kwargs):
        asked.append(f"{title}\n{text}")
        return answers.pop(0) if answers else YES

    monkeypatch.setattr(QMessageBox, "question", question)
    questions.answers = answers
    return asked, answers


@pytest.fixture
def warnings_shown(monkeypatch):
    shown: list[str] = []
    for kind in ("warning", "critical"):
        monkeypatch.setattr(
            QMessageBox, kind, lambda parent, title, text, *a, **k: shown.append(f"{title}\n{text}")
        )
    return shown


def open_window(qtbot, tiny_root, tmp_path, host) -> App:
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    return qt_helpers.open_window(qtbot, tiny_root, host, settings)


@pytest.fixture
def app(qtbot, tiny_root, tmp_path):
    folder = tmp_path / "plugins"
    write_plugin(folder, "broken", "def oops(:\n")
    host = get_plugin_manager([folder])
    w = open_window(qtbot, tiny_root, tmp_path, host)
    yield w
    close_window(qtbot, w)


def combo_names(app) -> list[str]:
    combo = app.training.panel.optimizer_combo
    return [combo.itemData(i) for i in range(combo.count())]


def test_menu_actions_follow_the_window_state(app):
    actions = app.plugin_menu.actions
    assert all(a.isEnabled() for a in actions.values())
    app.window.set_state("running")
    assert not any(a.isEnabled() for a in actions.values())
    app.window.set_state("idle")


def test_manager_lists_every_plugin_and_the_traceback_is_one_click_away(app, qtbot):
    dialog = PluginManagerDialog(app.window)
    qtbot.addWidget(dialog)
    assert dialog.names() == [
        "builtin_losses",
        "builtin_optimizers",
        "builtin_schedulers",
        "broken",
    ]
    row = dialog.row_of("broken")
    cells = [dialog.table.item(row, c).text() for c in range(1, 6)]
    assert cells == ["broken", "–", "–", "file", "failed"]
    sgd_row = dialog.row_of("builtin_optimizers")
    assert "optimizer:sgd" in dialog.table.item(sgd_row, 2).text()
    assert dialog.table.item(sgd_row, 4).text() == "built-in"

    dialog.table.selectRow(row)
    details = dialog.details.toPlainText()
    assert "SyntaxError" in details
    assert "Traceback" in details
    assert "broken.py" in details
    assert dialog.remove_button.isEnabled()  # a file plugin can be removed
    dialog.table.selectRow(sgd_row)
    assert not dialog.remove_button.isEnabled()  # a built-in cannot


def test_disabling_is_immediate_and_remembered(app, qtbot):
    dialog = PluginManagerDialog(app.window)
    qtbot.addWidget(dialog)
    item = dialog.table.item(dialog.row_of("builtin_optimizers"), 0)
    assert item.flags() & Qt.ItemFlag.ItemIsUserCheckable
    item.setCheckState(Qt.CheckState.Unchecked)
    assert "sgd" not in combo_names(app)
    assert "builtin_optimizers" in PluginSettings.load().disabled
    assert get_plugin_manager([]).records["builtin_optimizers"].status == "disabled"

    item = dialog.table.item(dialog.row_of("builtin_optimizers"), 0)
    item.setCheckState(Qt.CheckState.Checked)
    assert dialog.task is not None  # loading and self-testing run off the GUI thread
    qtbot.waitUntil(lambda: dialog.task is None, timeout=60_000)
    assert {"sgd", "adam", "rmsprop"} <= set(combo_names(app))
    assert PluginSettings.load().disabled == set()


def test_install_from_file_asks_with_the_hash_then_loads_at_once(
    app, tmp_path, monkeypatch, questions, warnings_shown
):
    asked, answers = questions
    source = write_plugin(tmp_path / "downloads", "my_adagrad", good_optimizer_source())
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", lambda *a, **k: (str(source), "Python plugin (*.py)")
    )
    from fmnist_gui.plugins.installer import file_sha256

    digest = file_sha256(source)
    answers.append(NO)  # first time: the user declines
    app.plugin_menu.actions["install_file"].trigger()
    assert not (user_plugin_dir() / "my_adagrad.py").exists()
    assert "my_adagrad" not in combo_names(app)

    app.plugin_menu.actions["install_file"].trigger()  # now Yes
    assert len(asked) == 2
    assert str(source) in asked[1]
    assert digest in asked[1]
    assert (user_plugin_dir() / "my_adagrad.py").read_bytes() == source.read_bytes()
    assert "my_adagrad" in combo_names(app)  # no restart
    assert app.backend.plugins.records["my_adagrad"].status == "loaded"
    assert PluginSettings.load().trusted_files == {"my_adagrad.py": digest}
    assert warnings_shown == []


def test_changed_plugin_file_is_asked_about_again(qtbot, tiny_root, tmp_path, questions):
    asked, answers = questions
    path = write_plugin(user_plugin_dir(), "mine", good_optimizer_source("mine_opt"))
    settings = PluginSettings.load()
    from fmnist_gui.plugins.installer import file_sha256

    settings.trusted_files["mine.py"] = file_sha256(path)
    settings.save()
    path.write_text(path.read_text() + "\n# edited\n")

    answers.append(NO)
    app = open_window(qtbot, tiny_root, tmp_path, None)  # the app loads the user's plugins
    try:
        qtbot.waitUntil(lambda: len(asked) == 1)
        assert "changed since you approved it" in asked[0]
        assert file_sha256(path) in asked[0]
        assert app.backend.plugins.records["mine"].status == "untrusted"
        assert "mine_opt" not in combo_names(app)

        # Approving from the manager loads it now.
        dialog = PluginManagerDialog(app.window)
        qtbot.addWidget(dialog)
        dialog.table.selectRow(dialog.row_of("mine"))
        assert dialog.approve_button.isEnabled()
        dialog.approve_button.click()
        assert app.backend.plugins.records["mine"].status == "loaded"
        assert "mine_opt" in combo_names(app)
        assert PluginSettings.load().trusted_files["mine.py"] == file_sha256(path)
    finally:
        close_window(qtbot, app)


def test_remove_a_file_plugin(app, qtbot, tmp_path, questions, monkeypatch):
    source = write_plugin(tmp_path / "downloads", "my_adagrad", good_optimizer_source())
    plugin_dialogs.install_from_file(app.window, source)
    dialog = PluginManagerDialog(app.window)
    qtbot.addWidget(dialog)
    dialog.table.selectRow(dialog.row_of("my_adagrad"))
    dialog.remove_button.click()
    assert not (user_plugin_dir() / "my_adagrad.py").exists()
    assert "my_adagrad" not in dialog.names()
    assert "my_adagrad" not in combo_names(app)
    assert PluginSettings.load().trusted_files == {}


@pytest.mark.slow
def test_install_package_runs_pip_and_loads_without_restart(app, qtbot, tmp_path, monkeypatch):
    target = tmp_path / "site"
    target.mkdir()
    monkeypatch.syspath_prepend(str(target))  # where --target puts it; already importable
    project = tmp_path / "src" / "fmnist-nadam"
    shutil.copytree(
        ROOT / "plugins" / "fmnist-nadam",
        project,
        ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"),
    )
    offline = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    dialog = PackageInstallDialog(
        app.window, extra_pip_args=["--no-deps", *offline, "--target", str(target)]
    )
    qtbot.addWidget(dialog)
    dialog.target_edit.setText(str(project))
    dialog.install_button.click()
    assert dialog.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: dialog.outcome != "", timeout=240_000)
    assert dialog.outcome == "installed", dialog.output.toPlainText()
    assert "Successfully installed fmnist-nadam" in dialog.output.toPlainText()
    assert [r.name for r in dialog.report.loaded] == ["nadam"]
    assert {"nadam", "radam"} <= set(combo_names(app))


def test_cancel_stops_pip(app, qtbot):
    dialog = PackageInstallDialog(app.window)
    qtbot.addWidget(dialog)
    dialog.start([sys.executable, "-u", "-c", "import time; print('collecting…'); time.sleep(120)"])
    qtbot.waitUntil(lambda: "collecting…" in dialog.output.toPlainText(), timeout=30_000)
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: dialog.outcome != "", timeout=30_000)
    assert dialog.outcome == "cancelled"
    assert not dialog.running
    assert dialog.install_button.isEnabled()


def test_bad_package_target_is_refused_before_pip(app, qtbot, tmp_path, warnings_shown):
    dialog = PackageInstallDialog(app.window)
    qtbot.addWidget(dialog)
    dialog.target_edit.setText(str(tmp_path))  # a folder, but no pyproject.toml
    dialog.install_button.click()
    assert not dialog.running
    assert "not a Python project" in warnings_shown[0]


FLAKY = """
import torch
from fmnist_gui import OptimizerSpec, hookimpl

class FlakySGD(torch.optim.SGD):
    calls = 0
    def step(self, closure=None):
        type(self).calls += 1
        if type(self).calls > 8 + 2:  # passes the self-test, then 2 training steps
            raise FloatingPointError("flaky kernel")
        return super().step(closure)

@hookimpl
def fmnist_register_optimizers():
    return [OptimizerSpec("flaky", "Flaky", lambda params, lr: FlakySGD(params, lr=lr))]
"""


def test_plugin_optimizer_raising_in_training_names_the_plugin(
    qtbot, tiny_root, tmp_path, warnings_shown
):
    folder = tmp_path / "plugins"
    write_plugin(folder, "flaky_plugin", FLAKY)
    app = open_window(qtbot, tiny_root, tmp_path, get_plugin_manager([folder]))
    try:
        combo = app.training.panel.optimizer_combo
        combo.setCurrentIndex(combo.findData("flaky"))
        app.training.panel.epochs_spin.setValue(1)
        app.training.start()
        qtbot.waitUntil(lambda: app.training.job is None and bool(warnings_shown), timeout=60_000)
        assert "flaky_plugin" in warnings_shown[0]
        assert "FloatingPointError: flaky kernel" in warnings_shown[0]
        assert app.window.state == "idle"
        assert app.training.trainer.global_step == 2  # the model is as of the last good step
    finally:
        close_window(qtbot, app)


def test_unwritable_plugin_folder_is_explained_not_fatal(
    app, tmp_path, monkeypatch, questions, warnings_shown
):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the app's data folder should be (fails even as root)")
    monkeypatch.setenv("FMNIST_GUI_HOME", str(blocker / "home"))
    source = write_plugin(tmp_path / "downloads", "my_adagrad", good_optimizer_source())
    assert plugin_dialogs.install_from_file(app.window, source) is None
    assert "cannot write to the plugin folder" in warnings_shown[0]
    assert "my_adagrad" not in combo_names(app)
    assert "sgd" in combo_names(app)


def test_restart_is_offered_and_declining_keeps_the_window(app, questions):
    asked, answers = questions
    answers.append(NO)
    assert plugin_dialogs.offer_restart(app.window, "fmnist-nadam was upgraded") is False
    assert "fmnist-nadam was upgraded" in asked[0]
    assert "Restart" in asked[0]
    assert app.window.isVisible()
