"""File → Open/Save/Export/Import, the unsaved mark, quitting, autosave and recovery, offscreen.

Real window, real training thread, real files; only the dialogs are patched
(``QFileDialog.getSaveFileName`` etc., where the code looks them up).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch
from PySide6.QtWidgets import QFileDialog, QMessageBox

from fmnist_gui import checkpoint as ckpt
from fmnist_gui.plugins.host import get_plugin_manager
from fmnist_gui.qt.app import App
from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.trainer import Trainer
from tests.conftest import run_stopping_after
from tests.support import tutorial_reference as tut
from tests.support.plugin_fixtures import good_optimizer_source, write_plugin
from tests.support.qt_helpers import open_window

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
Buttons = QMessageBox.StandardButton


def train_some(qtbot, w: App, steps: int = 5) -> None:
    w.training.start()
    qtbot.waitUntil(lambda: w.training.trainer.global_step >= steps, timeout=60_000)
    w.training.stop()
    qtbot.waitUntil(lambda: w.window.state == "idle", timeout=60_000)


def patch_save_dialog(monkeypatch, path) -> list:
    calls = []

    def fake(*args, **kwargs):
        calls.append(args)
        return (str(path), "")

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(fake))
    return calls


def patch_open_dialog(monkeypatch, path) -> None:
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), ""))
    )


def record(monkeypatch, name: str, answer=None) -> list:
    calls = []

    def fake(*args, **kwargs):
        calls.append(args)
        return answer

    monkeypatch.setattr(QMessageBox, name, staticmethod(fake))
    return calls


def test_file_menu_and_action_table(app):
    texts = [a.text() for a in app.window.menus["file"].actions() if not a.isSeparator()]
    assert texts == [
        "&Open Checkpoint…",
        "Open &Recent",
        "&Save",
        "Save &As…",
        "&Export Weights…",
        "&Import Weights…",
        "&Quit",
    ]
    table = app.window.actions.table()
    for state in ("running", "paused"):
        assert {"save", "save_as", "export_weights"} <= table[state]
        assert "open" not in table[state]
    enabled = {n for n, a in app.window.actions.items() if a.isEnabled()}
    assert {"open", "open_recent", "save", "save_as", "import_weights"} <= enabled
    assert app.window.windowTitle() == "Fashion-MNIST Trainer[*]"


def test_save_asks_for_a_path_once_then_saves_there(qtbot, app, tmp_path, monkeypatch):
    train_some(qtbot, app)
    assert app.window.windowTitle() == "Untitled[*] — Fashion-MNIST Trainer"
    assert app.window.isWindowModified()
    asked = patch_save_dialog(monkeypatch, tmp_path / "run")
    app.window.actions["save"].trigger()
    path = tmp_path / "run.pt"  # the suffix is added
    assert len(asked) == 1
    assert path.is_file()
    assert app.window.windowTitle() == "run.pt[*] — Fashion-MNIST Trainer"
    assert not app.window.isWindowModified()
    saved = ckpt.read_checkpoint(path)
    assert saved["position"]["global_step"] == app.training.trainer.global_step
    assert "Epoch 1" in saved["extra"]["log"]

    train_some(qtbot, app, app.training.trainer.global_step + 3)
    assert app.window.isWindowModified()
    app.window.actions["save"].trigger()
    assert len(asked) == 1  # no second question
    assert ckpt.read_checkpoint(path)["position"]["global_step"] == app.training.trainer.global_step
    assert app.checkpoints.recent_files() == [str(path.resolve())]


def test_save_during_training_snapshots_at_a_batch_and_training_goes_on(qtbot, app, tmp_path):
    app.training.start()
    qtbot.waitUntil(lambda: app.training.trainer.global_step >= 3, timeout=60_000)
    path = tmp_path / "live.pt"
    app.checkpoints.path = path
    app.window.actions["save"].trigger()
    qtbot.waitUntil(path.is_file, timeout=60_000)
    assert app.window.state == "running"
    saved_step = ckpt.read_checkpoint(path)["position"]["global_step"]
    qtbot.waitUntil(lambda: app.training.trainer.global_step > saved_step + 2, timeout=60_000)
    app.training.stop()
    qtbot.waitUntil(lambda: app.window.state == "idle", timeout=60_000)
    assert app.window.isWindowModified()  # it trained on after the snapshot

    saved = ckpt.read_checkpoint(path)
    losses = saved["history"]["batch_losses"].tolist()
    assert len(losses) == saved_step  # a consistent batch boundary
    assert losses == app.training.trainer.history.batch_losses[:saved_step]


def reference_trainer(tiny_data, plugins, epochs: int) -> Trainer:
    config = TrainConfig(
        epochs=epochs, batch_size=32, lr=0.002, optimizer="adam", shuffle=True, seed=3
    )
    return Trainer(config, tiny_data, plugins)


def test_open_replaces_model_plots_and_log_then_start_continues_exactly(
    qtbot, app, tmp_path, tiny_data, plugins, monkeypatch
):
    first = reference_trainer(tiny_data, plugins, 2)
    run_stopping_after(first, 11)
    path = tmp_path / "made-by-the-engine.pt"
    ckpt.save_checkpoint(path, first.state_dict())

    patch_open_dialog(monkeypatch, path)
    app.window.actions["open"].trigger()
    t = app.training.trainer
    assert t is not first
    assert t.global_step == 11
    assert t.config.optimizer == "adam"
    assert app.training.plots.point_count == 11
    log = app.window.log.toPlainText()
    assert log.startswith("Epoch 1\n---")
    assert "Accuracy:" in log
    assert app.window.windowTitle() == "made-by-the-engine.pt[*] — Fashion-MNIST Trainer"
    assert not app.window.isWindowModified()
    # The loaded model's own settings are shown as such; the new-model form is not touched.
    assert app.training.model_panel.epochs_target.value() == 2
    assert app.training.model_panel.rows["optimizer"].text().startswith("Adam")
    assert app.training.panel.epochs_spin.value() == 200

    app.training.start()  # continues the loaded model
    qtbot.waitUntil(lambda: app.window.state == "idle" and app.training.job is None, timeout=60_000)
    reference = reference_trainer(tiny_data, plugins, 2)
    list(reference.run())
    assert t.history.batch_losses == reference.history.batch_losses
    assert [e.test_loss for e in t.history.epochs] == [
        e.test_loss for e in reference.history.epochs
    ]


def test_broken_file_changes_nothing(qtbot, app, tmp_path, monkeypatch):
    train_some(qtbot, app)
    trainer, points = app.training.trainer, app.training.plots.point_count
    log = app.window.log.toPlainText()
    bad = tmp_path / "cut.pt"
    torch.save({"x": torch.zeros(1000)}, bad)
    bad.write_bytes(bad.read_bytes()[:700])
    record(monkeypatch, "question", Buttons.Discard)  # "save the unsaved training first?"
    warnings = record(monkeypatch, "warning")
    patch_open_dialog(monkeypatch, bad)
    app.window.actions["open"].trigger()
    assert len(warnings) == 1
    assert str(bad) in warnings[0][2]
    assert "truncated or damaged" in warnings[0][2]
    assert app.training.trainer is trainer
    assert app.training.plots.point_count == points
    assert app.window.log.toPlainText() == log
    assert app.window.isWindowModified()


def test_open_asks_before_dropping_unsaved_training(qtbot, app, tmp_path, monkeypatch):
    train_some(qtbot, app)
    trainer = app.training.trainer
    questions = record(monkeypatch, "question", Buttons.Cancel)
    opened = []
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: opened.append(a) or ("", ""))
    )
    app.window.actions["open"].trigger()
    assert len(questions) == 1
    assert "Save it before you open a checkpoint?" in questions[0][2]
    assert opened == []
    assert app.training.trainer is trainer


def test_missing_plugin_offers_the_weights_only(qtbot, app, tmp_path, tiny_data, monkeypatch):
    plugin_dir = tmp_path / "plugins"
    write_plugin(plugin_dir, "fmnist_adagrad", good_optimizer_source("my_adagrad"))
    trainer = Trainer(
        TrainConfig(epochs=1, batch_size=64, optimizer="my_adagrad", seed=2),
        tiny_data,
        get_plugin_manager([plugin_dir]),
    )
    list(trainer.run())
    path = tmp_path / "adagrad.pt"
    ckpt.save_checkpoint(path, trainer.state_dict())

    questions = record(monkeypatch, "question", Buttons.Yes)
    patch_open_dialog(monkeypatch, path)
    app.window.actions["open"].trigger()
    assert len(questions) == 1
    assert "optimizer 'my_adagrad' from plugin 'fmnist_adagrad' 2.5" in questions[0][2]
    assert "Load only the model's weights" in questions[0][2]
    loaded = app.training.trainer
    assert loaded.global_step == 0
    assert loaded.config.optimizer == "sgd"
    assert torch.equal(
        loaded.model.linear_relu_stack[4].weight, trainer.model.linear_relu_stack[4].weight
    )


def test_export_and_import_weights_in_the_tutorials_format(qtbot, app, tmp_path, monkeypatch):
    train_some(qtbot, app)
    path = tmp_path / "model_weights.pth"
    patch_save_dialog(monkeypatch, path)
    app.window.actions["export_weights"].trigger()
    model = tut.NeuralNetwork()
    model.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(
        model.linear_relu_stack[0].weight, app.training.trainer.model.linear_relu_stack[0].weight
    )

    record(monkeypatch, "question", Buttons.Discard)
    patch_open_dialog(monkeypatch, path)
    app.window.actions["import_weights"].trigger()
    imported = app.training.trainer
    assert imported.global_step == 0
    assert torch.equal(
        imported.model.linear_relu_stack[0].weight, model.linear_relu_stack[0].weight
    )
    assert "Imported the weights of" in app.window.log.toPlainText()


def test_failed_save_keeps_the_old_file_and_the_mark(qtbot, app, tmp_path, monkeypatch):
    train_some(qtbot, app)
    path = tmp_path / "ck.pt"
    app.checkpoints.path = path
    app.window.actions["save"].trigger()
    old = path.read_bytes()
    train_some(qtbot, app, app.training.trainer.global_step + 2)
    from fmnist_gui.system import fileio

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.tempfile, "mkstemp", full_disk)
    warnings = record(monkeypatch, "warning")
    app.window.actions["save"].trigger()
    assert len(warnings) == 1
    assert "the disk is full" in warnings[0][2]
    assert path.read_bytes() == old
    assert app.window.isWindowModified()


def test_quitting_with_unsaved_training_asks(qtbot, app, monkeypatch):
    train_some(qtbot, app)
    monkeypatch.setattr(QMessageBox, "open", lambda self: None)  # never shown
    app.window.close()
    box = app.checkpoints.quit_box
    assert box is not None
    assert app.window.isVisible()
    assert "Save it before quitting?" in box.text()
    box.button(Buttons.Cancel).click()
    assert app.window.isVisible()
    assert app.checkpoints.quit_box is None

    app.window.close()
    app.checkpoints.quit_box.button(Buttons.Discard).click()
    assert not app.window.isVisible()


def dead_pid() -> int:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(child.stdout)


def test_autosave_at_epoch_end_then_recovery_after_a_crash(
    qtbot, app, tiny_root, plugins, settings, monkeypatch
):
    app.training.panel.batch_spin.setValue(64)
    app.training.panel.epochs_spin.setValue(2)
    app.training.start()
    qtbot.waitUntil(lambda: app.window.state == "idle" and app.training.job is None, timeout=60_000)
    autosave = ckpt.autosave_path()
    qtbot.waitUntil(autosave.is_file, timeout=30_000)
    app.checkpoints.wait_for_autosave()  # autosaves are written off the GUI thread
    saved = ckpt.read_checkpoint(autosave)
    assert saved["position"]["epochs_done"] >= 1
    assert "Epoch 1" in saved["extra"]["log"]

    # The session "crashes": its autosave is left under a dead process's name.
    crashed = ckpt.autosave_path(dead_pid())
    shutil.copyfile(autosave, crashed)
    questions = record(monkeypatch, "question", Buttons.Yes)
    second = open_window(qtbot, tiny_root, plugins, settings)
    qtbot.waitUntil(lambda: second.training.trainer is not None, timeout=30_000)
    assert len(questions) == 1
    assert questions[0][1] == "Recover unsaved training?"
    assert second.training.trainer.global_step == saved["position"]["global_step"]
    assert second.window.isWindowModified()
    assert "Epoch 1" in second.window.log.toPlainText()
    assert not crashed.exists()
    assert ckpt.autosave_path().is_file()
    second.checkpoints._quit_confirmed = True  # let the test close it without asking
