"""The live model and the new-model form are two things: real window, real training, offscreen.

The current model's settings come from its trainer and are shown read-only;
the form holds the settings of a new model. Plugin changes, Open, Import,
Reset and restarts never move one into the other.
"""

from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog, QMessageBox

from fmnist_gui import checkpoint as ckpt
from fmnist_gui.plugins.host import get_plugin_manager
from fmnist_gui.qt.features.plugins.dialogs import PluginManagerDialog
from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.trainer import Trainer
from tests.conftest import run_stopping_after
from tests.support.plugin_fixtures import (
    forgetting_plugin_modules,
    good_optimizer_source,
    write_plugin,
)
from tests.support.qt_helpers import close_window, open_window

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
Buttons = QMessageBox.StandardButton


@pytest.fixture(autouse=True)
def _forget_plugin_modules():
    with forgetting_plugin_modules():
        yield


def choose(combo, name: str) -> None:
    combo.setCurrentIndex(combo.findData(name))


def wait_idle(qtbot, app) -> None:
    qtbot.waitUntil(lambda: app.window.state == "idle" and app.training.job is None, timeout=60_000)


def train_some(qtbot, app, steps: int) -> None:
    app.training.start()
    qtbot.waitUntil(lambda: app.training.trainer.global_step >= steps, timeout=60_000)
    app.training.stop()
    wait_idle(qtbot, app)


@pytest.fixture
def saved_session(tmp_path) -> QSettings:
    """Settings as a previous session left them: the tutorial's Adam, lr 1e-3, 2 epochs, 64."""
    settings = QSettings(str(tmp_path / "session.ini"), QSettings.Format.IniFormat)
    for key, value in (
        ("optimizer", "adam"),
        ("lr", "0.001"),
        ("epochs", 2),
        ("batch_size", 64),
        ("seed", "1234"),  # an older version kept the seed: it must not come back
    ):
        settings.setValue(f"training/{key}", value)
    settings.sync()
    return settings


def test_installing_and_disabling_plugins_never_change_the_live_model(
    qtbot, tiny_root, plugins, saved_session, tmp_path, monkeypatch
):
    app = open_window(qtbot, tiny_root, plugins, saved_session)
    try:
        panel, model = app.training.panel, app.training.model_panel
        assert panel.seed_edit.text() == ""  # random unless typed in this session
        choose(panel.optimizer_combo, "rmsprop")
        panel.lr_edit.setText("0.002")
        panel.batch_spin.setValue(512)
        panel.epochs_spin.setValue(1)
        app.training.start()
        wait_idle(qtbot, app)
        trainer = app.training.trainer
        assert trainer.epochs_done == 1

        # Install a plugin, then disable it: the plugin host changes twice.
        monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: Buttons.Yes)
        source = write_plugin(tmp_path / "downloads", "my_adagrad", good_optimizer_source())
        monkeypatch.setattr(
            QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(source), ""))
        )
        app.plugin_menu.actions["install_file"].trigger()
        assert app.backend.plugins.records["my_adagrad"].status == "loaded"
        dialog = PluginManagerDialog(app.window)
        qtbot.addWidget(dialog)
        dialog.set_enabled("my_adagrad", False)

        # The current model is shown as it is, and the form kept what the user typed.
        assert model.rows["optimizer"].text().startswith("RMSProp")
        assert model.rows["lr"].text() == "0.002"
        assert model.rows["batch_size"].text() == "512"
        assert model.rows["seed"].text() == str(trainer.seed)
        assert model.epochs_done.text() == "1 of"
        assert model.epochs_target.value() == 1
        assert panel.optimizer_combo.currentData() == "rmsprop"
        assert panel.lr_edit.text() == "0.002"
        assert panel.batch_spin.value() == 512
        assert panel.epochs_spin.value() == 1
        start = app.window.actions["start"]
        assert start.text() == "&Continue"
        assert "raise them" in start.statusTip()
        app.training.start()  # finished its one epoch: the form's epochs do not extend it
        assert app.training.job is None
        assert trainer.epochs_done == 1

        # Continue trains the live model with its own settings, whatever the form says.
        choose(panel.optimizer_combo, "sgd")
        panel.lr_edit.setText("0.5")
        panel.batch_spin.setValue(8)
        panel.epochs_spin.setValue(9)
        model.epochs_target.setValue(2)
        app.training.start()
        wait_idle(qtbot, app)
        assert app.training.trainer is trainer
        assert trainer.epochs_done == 2
        assert trainer.config.epochs == 2
        assert isinstance(trainer.optimizer, torch.optim.RMSprop)
        assert trainer.optimizer.param_groups[0]["lr"] == 0.002
        assert trainer.config.batch_size == 512
        assert trainer.global_step == 2
    finally:
        app.training.dirty = False
        close_window(qtbot, app)


def test_a_model_whose_optimizer_plugin_is_gone_cannot_continue(qtbot, app):
    panel = app.training.panel
    choose(panel.optimizer_combo, "rmsprop")
    train_some(qtbot, app, 3)
    trainer = app.training.trainer
    steps = trainer.global_step
    dialog = PluginManagerDialog(app.window)
    qtbot.addWidget(dialog)
    dialog.set_enabled("builtin_optimizers", False)

    start = app.window.actions["start"]
    assert not start.isEnabled()
    assert "cannot continue" in start.statusTip()
    assert "builtin_optimizers" in start.statusTip()
    problem = app.training.model_panel.problem
    assert problem.isVisibleTo(app.window)
    assert "RMSProp" in problem.text()
    app.training.start()  # a shortcut that slipped through is refused with the reason
    assert app.training.job is None
    assert trainer.global_step == steps
    assert "cannot continue" in app.window.statusBar().currentMessage()

    dialog.set_enabled("builtin_optimizers", True)
    qtbot.waitUntil(lambda: dialog.task is None, timeout=60_000)
    assert start.isEnabled()
    assert not problem.isVisibleTo(app.window)
    app.training.dirty = False


def test_open_shows_the_file_model_and_leaves_the_seed_random_across_restarts(
    qtbot, tiny_root, tiny_data, plugins, settings, tmp_path, monkeypatch
):
    first = Trainer(
        TrainConfig(epochs=2, batch_size=32, lr=0.003, optimizer="adam", seed=4321),
        tiny_data,
        plugins,
    )
    run_stopping_after(first, 3)
    path = tmp_path / "seeded.pt"
    ckpt.save_checkpoint(path, first.state_dict())

    app = open_window(qtbot, tiny_root, plugins, settings)
    assert app.checkpoints.open(path)
    model = app.training.model_panel
    assert model.rows["seed"].text() == "4321"
    assert model.rows["lr"].text() == "0.003"
    assert app.training.panel.seed_edit.text() == ""  # the form is for a new model
    app.training.reset()
    assert not model.rows["seed"].isVisibleTo(app.window)  # no model now
    app.training.start()  # a new model: a fresh random seed
    qtbot.waitUntil(lambda: app.training.trainer.global_step >= 1, timeout=60_000)
    app.training.stop()
    wait_idle(qtbot, app)
    assert app.training.trainer.seed != 4321
    app.training.dirty = False
    close_window(qtbot, app)
    app.window.close()

    again = open_window(qtbot, tiny_root, get_plugin_manager([tmp_path / "none"]), settings)
    try:
        assert again.training.panel.seed_edit.text() == ""
    finally:
        close_window(qtbot, again)


def test_imported_weights_take_the_forms_settings_at_start(qtbot, app, tmp_path, monkeypatch):
    panel = app.training.panel
    train_some(qtbot, app, 3)
    path = tmp_path / "w.pth"
    ckpt.export_weights(path, app.training.trainer.state_dict()["model"])
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: Buttons.Discard)
    assert app.checkpoints.import_weights(path)
    assert app.window.actions["start"].text() == "&Start"
    for field in (panel.optimizer_combo, panel.lr_edit, panel.batch_spin):
        assert field.isEnabled()  # not locked: the weights become a new model
    assert "imported" in app.training.model_panel.empty.text().lower()

    choose(panel.optimizer_combo, "adam")
    panel.lr_edit.setText("0.005")
    panel.epochs_spin.setValue(500)  # so it cannot finish before the stop below
    started = []
    app.training.trainer_changed.connect(
        lambda t: started.append(t.model.linear_relu_stack[0].weight.detach().clone())
    )
    app.training.start()
    trainer = app.training.trainer
    assert trainer.config.optimizer == "adam"
    assert trainer.config.lr == 0.005
    assert torch.equal(started[0], ckpt.load_weights(path)["linear_relu_stack.0.weight"])
    # A model stopped before its first step is still a new one; after a step it continues.
    qtbot.waitUntil(lambda: trainer.global_step >= 1, timeout=60_000)
    app.training.stop()
    wait_idle(qtbot, app)
    assert app.window.actions["start"].text() == "&Continue"
    app.training.dirty = False


def test_steps_since_the_last_save_count_from_that_save(qtbot, app, tmp_path, monkeypatch):
    train_some(qtbot, app, 3)
    app.checkpoints.path = tmp_path / "ck.pt"
    app.window.actions["save"].trigger()
    saved_at = app.training.trainer.global_step
    train_some(qtbot, app, saved_at + 4)
    asked = []
    monkeypatch.setattr(
        QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or Buttons.Cancel
    )
    app.checkpoints.confirm_discard("Open a checkpoint")
    since = app.training.trainer.global_step - saved_at
    assert f"trained {since} steps since it was last saved" in asked[0]
    app.training.dirty = False


def test_opening_a_checkpoint_forgets_the_last_runs_timing(
    qtbot, app, tiny_data, plugins, tmp_path
):
    train_some(qtbot, app, 5)
    progress = app.training.progress
    assert progress.elapsed.text() != "–"
    other = Trainer(TrainConfig(epochs=2, batch_size=32, seed=3), tiny_data, plugins)
    run_stopping_after(other, 4)
    path = tmp_path / "other.pt"
    ckpt.save_checkpoint(path, other.state_dict())
    app.training.dirty = False
    assert app.checkpoints.open(path)
    assert [progress.elapsed.text(), progress.eta.text(), progress.speed.text()] == ["–"] * 3


def test_after_open_the_log_follows_new_lines_and_numbers_positions_one_way(
    qtbot, app, tiny_data, plugins, tmp_path
):
    other = Trainer(TrainConfig(epochs=3, batch_size=4, seed=3), tiny_data, plugins)
    run_stopping_after(other, 85)
    path = tmp_path / "long.pt"
    long_log = "\n".join(f"old line {i}" for i in range(500))
    ckpt.save_checkpoint(path, other.state_dict(), extra={"log": long_log})
    assert app.checkpoints.open(path)
    log = app.window.log
    app.training.start()
    qtbot.waitUntil(lambda: app.training.trainer.global_step >= 150, timeout=60_000)
    app.training.stop()
    wait_idle(qtbot, app)
    bar = log.verticalScrollBar()
    assert bar.maximum() > 0
    assert bar.value() == bar.maximum()
    text = log.toPlainText()
    position = "after step 85 (1 epochs done, 21 batches into epoch 2)"
    assert f"Loaded a model {position}" in text
    assert f"Continuing the same model {position}" in text
