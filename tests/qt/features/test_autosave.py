"""Autosave every N minutes of running, mid-epoch, written off the GUI thread."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

from fmnist_gui import checkpoint as ckpt
from fmnist_gui.plugins.host import get_plugin_manager
from fmnist_gui.qt.features.checkpoints.controller import (
    AUTOSAVE_MINUTES_KEY,
    DEFAULT_AUTOSAVE_MINUTES,
    autosave_minutes,
)
from tests.support.qt_helpers import close_window, open_window

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def autosaved_position() -> tuple[int, int, int] | None:
    """(epochs_done, batch_in_epoch, global_step) of this session's autosave, if any."""
    path = ckpt.autosave_path()
    if not path.exists():
        return None
    position = ckpt.read_checkpoint(path)["position"]
    return position["epochs_done"], position["batch_in_epoch"], position["global_step"]


def test_the_interval_is_a_setting_with_a_default(settings):
    assert autosave_minutes(settings) == DEFAULT_AUTOSAVE_MINUTES == 2.0
    settings.setValue(AUTOSAVE_MINUTES_KEY, "0.5")
    assert autosave_minutes(settings) == 0.5
    settings.setValue(AUTOSAVE_MINUTES_KEY, "soon")
    assert autosave_minutes(settings) == DEFAULT_AUTOSAVE_MINUTES


def test_autosaves_advance_mid_epoch_while_running(qtbot, app):
    checkpoints = app.checkpoints
    checkpoints.set_autosave_interval(0.003)  # every 180 ms
    app.training.panel.batch_spin.setValue(1)  # 256 batches an epoch: long epochs
    seen: list[tuple[int, int, int]] = []

    def record() -> bool:
        checkpoints.wait_for_autosave()
        position = autosaved_position()
        if position is not None and position not in seen:
            seen.append(position)
        mid_epoch = [p for p in seen if p[1] > 0]
        return len(mid_epoch) >= 3

    app.window.actions["start"].trigger()
    assert checkpoints.autosave_timer.isActive()
    qtbot.waitUntil(record, timeout=60_000)
    app.window.actions["stop"].trigger()
    qtbot.waitUntil(lambda: app.window.state == "idle", timeout=30_000)
    assert not checkpoints.autosave_timer.isActive()
    steps = [p[2] for p in seen]
    assert steps == sorted(steps)
    assert len(set(steps)) == len(steps)
    # Mid-epoch: saved between two batches of an epoch, not at its end.
    assert any(0 < p[1] < 256 for p in seen)


def test_no_timer_autosave_while_paused_or_idle(qtbot, app):
    checkpoints = app.checkpoints
    checkpoints.set_autosave_interval(0.003)
    assert not checkpoints.autosave_timer.isActive()
    app.window.actions["start"].trigger()
    assert checkpoints.autosave_timer.isActive()
    app.window.actions["pause"].trigger()
    qtbot.waitUntil(lambda: app.window.state == "paused", timeout=30_000)
    assert not checkpoints.autosave_timer.isActive()
    app.window.actions["stop"].trigger()
    qtbot.waitUntil(lambda: app.window.state == "idle", timeout=30_000)
    assert not checkpoints.autosave_timer.isActive()


TRAIN_UNTIL_KILLED = """
import sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
import fmnist_gui.qt.app as app_module
from fmnist_gui.qt.features.checkpoints.controller import AUTOSAVE_MINUTES_KEY
from fmnist_gui.qt.shell.window import make_settings

app = QApplication([sys.argv[0]])
settings = make_settings()
settings.setValue(AUTOSAVE_MINUTES_KEY, 0.005)  # every 300 ms, as the user would set it
settings.sync()
real_build = app_module.build_app

def build(*args, **kwargs):
    fmnist = real_build(*args, **kwargs)
    def start():
        if fmnist.window.state != "idle":
            QTimer.singleShot(20, start)
            return
        fmnist.training.panel.batch_spin.setValue(1)
        fmnist.training.panel.epochs_spin.setValue(100)
        fmnist.window.actions["start"].trigger()
        print("started", flush=True)
    QTimer.singleShot(0, start)
    return fmnist

app_module.build_app = build
sys.exit(app_module.main(sys.argv[1:]))
"""


def test_a_killed_app_recovers_to_a_mid_epoch_autosave(qtbot, tmp_path, tiny_root, monkeypatch):
    """SIGKILL a real app process mid-epoch; the next start offers that autosave."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    child = subprocess.Popen(
        [sys.executable, "-c", TRAIN_UNTIL_KILLED, "--data-dir", str(tiny_root)],
        env=env,  # FMNIST_GUI_HOME: this test's home (conftest), shared with the restart
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    folder = ckpt.autosave_dir()
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 120
        mid_epoch = None
        while mid_epoch is None and time.monotonic() < deadline:
            time.sleep(0.2)
            path = folder / f"session-{child.pid}.pt"
            try:
                position = ckpt.read_checkpoint(path)["position"]
            except ckpt.CheckpointError:
                continue  # not written yet
            if position["batch_in_epoch"] > 0:
                mid_epoch = position
        assert mid_epoch is not None, "no mid-epoch autosave appeared"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    left = ckpt.read_checkpoint(folder / f"session-{child.pid}.pt")["position"]
    assert left["global_step"] >= mid_epoch["global_step"]

    asked = []

    def question(parent, title, text, *args):
        asked.append(title)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    settings = QSettings(str(tmp_path / "restart.ini"), QSettings.Format.IniFormat)
    app = open_window(qtbot, tiny_root, get_plugin_manager([tmp_path / "none"]), settings)
    try:
        assert asked == ["Recover unsaved training?"]
        trainer = app.training.trainer
        assert trainer is not None
        assert (trainer.epochs_done, trainer.batch_in_epoch) == (
            left["epochs_done"],
            left["batch_in_epoch"],
        )
        assert trainer.batch_in_epoch > 0  # mid-epoch, not the last epoch end
    finally:
        app.checkpoints._quit_confirmed = True  # the recovered model is unsaved: no question
        close_window(qtbot, app)
