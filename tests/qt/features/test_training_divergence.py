"""The window after a divergence: nothing good overwritten, Continue held, rollback offered."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtWidgets import QMessageBox

from fmnist_gui import checkpoint as ckpt
from fmnist_gui.plugins.host import get_plugin_manager
from fmnist_gui.training.config import TrainConfig
from tests.support.plugin_fixtures import BOMB_OPTIMIZER, write_plugin
from tests.support.qt_helpers import close_window, open_window

BATCHES = 16  # the tiny data in batches of 16


@pytest.fixture
def bomb_app(qtbot, tmp_path, tiny_root, settings):
    folder = tmp_path / "bomb-plugins"
    write_plugin(folder, "bomb", BOMB_OPTIMIZER)
    app = open_window(qtbot, tiny_root, get_plugin_manager([folder]), settings)
    yield app
    close_window(qtbot, app)


def diverge_at_the_end_of_epoch_2(qtbot, app):
    app.training.panel.set_config(
        TrainConfig(
            epochs=3,
            batch_size=16,
            lr=0.01,
            seed=1,
            optimizer="bomb_nan_weights",
            optimizer_params={"blow_at": 2 * BATCHES},
        )
    )
    app.training.start()
    qtbot.waitUntil(lambda: app.training.divergence_box is not None, timeout=60_000)
    assert app.window.state == "idle"


def test_divergence_holds_continue_offers_rollback_and_keeps_the_autosave(qtbot, bomb_app):
    app, actions = bomb_app, bomb_app.window.actions
    diverge_at_the_end_of_epoch_2(qtbot, app)
    trainer = app.training.trainer
    assert trainer.diverged is not None
    assert "test loss became nan" in app.training.divergence_box.text()

    # The epoch-1 autosave is still the last good state: the NaN epoch never replaced it.
    autosave = ckpt.autosave_path()
    qtbot.waitUntil(autosave.is_file, timeout=30_000)
    saved = ckpt.read_checkpoint(autosave)
    assert saved["position"]["epochs_done"] == 1
    assert all(bool(torch.isfinite(t).all()) for t in saved["model"].values())

    # Continue is held, with the reason; rollback is offered; the plot marks the event.
    assert not actions["start"].isEnabled()
    assert "diverged" in actions["start"].statusTip()
    assert actions["rollback"].isEnabled()
    assert actions["rollback_half_lr"].isEnabled()
    assert (2 * BATCHES, "diverged") in app.training.plots.marks
    step = trainer.global_step
    app.training.start()  # F5 anyway: nothing trains
    assert app.training.job is None
    assert trainer.global_step == step

    halve = next(
        b for b in app.training.divergence_box.buttons() if b.text() == "Roll back, halve lr"
    )
    halve.click()
    assert trainer.diverged is None
    assert (trainer.global_step, trainer.epochs_done) == (BATCHES, 1)
    assert trainer.optimizer.param_groups[0]["lr"] == 0.005
    assert (BATCHES, "rollback") in app.training.plots.marks
    assert actions["start"].isEnabled()
    assert not actions["rollback"].isEnabled()

    app.training.start()
    qtbot.waitUntil(lambda: app.window.state == "idle" and app.training.job is None, timeout=60_000)
    assert trainer.epochs_done == 3
    assert app.training.divergence_box is None


def test_window_closes_while_a_rollback_is_offered(qtbot, bomb_app):
    diverge_at_the_end_of_epoch_2(qtbot, bomb_app)
    bomb_app.window.close()  # the unsaved-training question comes first, as always
    box = bomb_app.checkpoints.quit_box
    assert box is not None
    box.button(QMessageBox.StandardButton.Discard).click()
    qtbot.waitUntil(lambda: not bomb_app.window.isVisible(), timeout=5_000)
