"""The desktop app, offscreen, on tiny data: real widgets, real threads, real plugins."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox, QTableWidget, QTextBrowser

from fmnist_gui.qt.app import App
from fmnist_gui.qt.infra import threads
from tests.support.qt_helpers import close_window, open_window, show_widget

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def enabled_actions(app: App) -> set[str]:
    return {name for name, action in app.window.actions.items() if action.isEnabled()}


SAVING = {"save", "save_as", "export_weights"}
PLUGINS = {
    "plugins_manage",
    "plugins_install_file",
    "plugins_install_package",
    "plugins_uninstall_package",
}
# Allowed while idle, but held by their blocker until a model has diverged.
ROLLBACK = {"rollback", "rollback_half_lr"}
HELP = {"quit", "about", "guide", "shortcuts"}  # always enabled
# Which commands each state allows: the one table, as the features registered it.
EXPECTED_TABLE = {
    "loading": HELP,
    "idle": HELP
    | {"start", "reset", "open", "open_recent", "import_weights"}
    | SAVING
    | PLUGINS
    | ROLLBACK
    | {"find_lr"},
    "running": HELP | {"pause", "stop", "find_lr"} | SAVING,
    "paused": HELP | {"pause", "stop", "find_lr"} | SAVING,
    "stopping": HELP,
}


def test_action_table_is_the_state_table(app):
    assert app.window.actions.table() == EXPECTED_TABLE


def test_action_states_follow_the_table(app):
    for state, allowed in app.window.actions.table().items():
        app.window.set_state(state)
        assert enabled_actions(app) == set(allowed) - ROLLBACK, state
    app.window.set_state("idle")


def test_a_blocker_disables_an_action_with_its_reason(app):
    training = app.training
    start = app.window.actions["start"]
    assert start.isEnabled()
    assert start.statusTip() == "Start training a new model"
    reason = {"now": "a test holds training"}
    training.add_blocker(lambda: reason["now"])
    app.window.update_actions()
    assert not start.isEnabled()
    assert start.statusTip() == "a test holds training"
    reason["now"] = ""
    app.window.update_actions()
    assert start.isEnabled()
    assert start.statusTip() == "Start training a new model"


def test_an_action_cannot_be_registered_twice_or_for_an_unknown_state(app):
    from PySide6.QtGui import QAction

    with pytest.raises(ValueError, match="registered already"):
        app.window.actions.add("save", QAction("again"), {"idle"})
    with pytest.raises(ValueError, match="unknown states"):
        app.window.actions.add("fly", QAction("Fly"), {"flying"})  # type: ignore[arg-type]


def test_menus_shortcuts_and_extension_points(app):
    assert set(app.window.menus) == {"file", "training", "plugins", "help"}
    assert [a.objectName() for a in app.window.menus["plugins"].actions()] == [
        "plugins_manage",
        "plugins_install_file",
        "plugins_install_package",
        "plugins_uninstall_package",
    ]
    shortcuts = {
        name: app.window.actions[name].shortcut().toString()
        for name in ("start", "stop", "open", "save", "save_as", "quit", "find_lr")
    }
    assert shortcuts == {
        "find_lr": "Ctrl+L",
        "start": "F5",
        "stop": "Shift+F5",
        "open": "Ctrl+O",
        "save": "Ctrl+S",
        "save_as": "Ctrl+Shift+S",
        "quit": "Ctrl+Q",
    }
    assert app.window.tabs.tabText(0) == "Training"
    # Combos come from the plugin registry, not from a list in the GUI.
    combo = app.training.panel.optimizer_combo
    assert [combo.itemData(i) for i in range(combo.count())] == list(app.backend.plugins.optimizers)
    about = app.window.about_text()
    assert "PyTorch" in about
    assert "builtin_optimizers" in about


def test_optimizer_form_is_built_from_the_schema(app):
    panel = app.training.panel
    for index in range(panel.optimizer_combo.count()):
        panel.optimizer_combo.setCurrentIndex(index)
        spec = app.backend.plugins.optimizers[panel.optimizer_combo.currentData()]
        assert list(panel.optimizer_form.fields) == [p.name for p in spec.params]
        for param in spec.params:
            field = panel.optimizer_form.fields[param.name]
            assert param.help in field.toolTip()


def test_start_batches_arrive_in_order_then_stop_and_continue(qtbot, app):
    seen: list[tuple[int, float]] = []
    app.training.batch_loss.connect(lambda step, loss: seen.append((step, loss)))
    with qtbot.waitSignal(app.window.state_changed, timeout=10_000):
        app.window.actions["start"].trigger()
    assert app.window.state == "running"
    trainer = app.training.trainer
    qtbot.waitUntil(lambda: len(seen) >= 10, timeout=30_000)
    app.window.actions["stop"].trigger()
    assert app.window.state == "stopping"
    qtbot.waitUntil(lambda: app.window.state == "idle", timeout=30_000)
    # Every batch, in order, with the loss the engine recorded.
    assert [step for step, _ in seen] == list(range(1, trainer.global_step + 1))
    assert [loss for _, loss in seen] == trainer.history.batch_losses
    assert app.training.plots.point_count == trainer.global_step  # the frame timer caught up
    assert "Epoch 1\n-------------------------------" in app.window.log.toPlainText()
    assert "Continue trains the same model further" in app.window.log.toPlainText()
    assert app.window.actions["start"].text() == "&Continue"

    # Start after Stop continues the very same trainer, from the same step.
    stopped_at = trainer.global_step
    seen.clear()
    app.window.actions["start"].trigger()
    qtbot.waitUntil(lambda: len(seen) >= 3, timeout=30_000)
    app.training.stop()
    qtbot.waitUntil(lambda: app.window.state == "idle", timeout=30_000)
    assert app.training.trainer is trainer
    assert seen[0][0] == stopped_at + 1
    assert "Continuing the same model" in app.window.log.toPlainText()


def test_pause_and_resume(qtbot, app):
    app.training.start()
    trainer = app.training.trainer
    qtbot.waitUntil(lambda: trainer.global_step >= 3, timeout=30_000)
    app.window.actions["pause"].trigger()
    assert app.window.state == "paused"
    assert app.window.actions["pause"].text() == "&Resume"
    assert enabled_actions(app) >= {"pause", "stop"}
    assert "start" not in enabled_actions(app)
    # A snapshot asked now is taken where the training thread parks: at the batch
    # boundary after the batch that was under way when Pause came.
    snapshots: list[dict] = []
    app.checkpoints.with_snapshot(snapshots.append)
    qtbot.waitUntil(lambda: len(snapshots) == 1, timeout=30_000)
    held = snapshots[0]["position"]["global_step"]
    assert trainer.global_step == held
    # A second one is served by the paused thread itself, at that same step.
    app.checkpoints.with_snapshot(snapshots.append)
    qtbot.waitUntil(lambda: len(snapshots) == 2, timeout=30_000)
    assert snapshots[1]["position"]["global_step"] == held == trainer.global_step
    app.window.actions["pause"].trigger()
    assert app.window.state == "running"
    qtbot.waitUntil(lambda: trainer.global_step > held, timeout=30_000)
    app.training.stop()
    qtbot.waitUntil(lambda: app.window.state == "idle", timeout=30_000)


@pytest.mark.parametrize(
    ("field", "text", "expected"),
    [
        ("lr", "-1", "learning rate"),
        ("lr", "fast", "not a number"),
        ("momentum", "2", "momentum"),
    ],
)
def test_bad_hyperparameters_are_refused(qtbot, app, field, text, expected):
    panel = app.training.panel
    widget = panel.lr_edit if field == "lr" else panel.optimizer_form.fields[field]
    widget.setText(text)
    app.training.start()
    assert app.window.state == "idle"
    assert app.training.job is None
    assert app.training.trainer is None
    assert widget.property("invalid") is True
    assert expected in panel.message.text()
    assert panel.message.isVisibleTo(app.window)
    widget.clear()
    qtbot.keyClicks(widget, "0.001" if field == "lr" else "0.5")  # editing clears the mark
    assert widget.property("invalid") is False


def test_optimizer_refusing_its_settings_is_reported(app, monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "critical", lambda *a: shown.append(a[2]))
    app.training.panel.optimizer_form.fields["nesterov"].setChecked(True)  # needs momentum > 0
    app.training.start()
    assert app.training.trainer is None
    assert app.training.job is None
    assert shown
    assert "refused its settings" in shown[0]


def test_closing_during_training_asks_then_stops_and_closes(qtbot, app, monkeypatch):
    monkeypatch.setattr(QMessageBox, "open", lambda self: None)  # never shown
    app.training.start()
    qtbot.waitUntil(lambda: app.training.trainer.global_step >= 2, timeout=30_000)
    app.window.close()
    box = app.training.quit_box
    buttons = QMessageBox.StandardButton
    assert [box.button(b).text() for b in (buttons.Save, buttons.Discard, buttons.Cancel)] == [
        "Save and quit",
        "Quit without saving",
        "Cancel",
    ]
    assert "not saved" in box.text()
    box.button(buttons.Cancel).click()
    assert app.window.isVisible()
    assert app.window.state == "running"
    app.window.close()
    app.training.quit_box.button(buttons.Discard).click()
    qtbot.waitUntil(lambda: not app.window.isVisible(), timeout=10_000)
    assert app.training.job is None
    assert app.checkpoints.quit_box is None  # not asked twice
    assert not threads.live_threads()


def test_save_and_quit_while_training_saves_then_closes(qtbot, app, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from fmnist_gui import checkpoint as ckpt

    path = tmp_path / "quit.pt"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(path), ""))
    )
    monkeypatch.setattr(QMessageBox, "open", lambda self: None)  # never shown
    app.training.start()
    qtbot.waitUntil(lambda: app.training.trainer.global_step >= 2, timeout=30_000)
    app.window.close()
    app.training.quit_box.button(QMessageBox.StandardButton.Save).click()
    qtbot.waitUntil(lambda: not app.window.isVisible(), timeout=30_000)
    saved = ckpt.read_checkpoint(path)
    assert saved["position"]["global_step"] == app.training.trainer.global_step


def test_quit_question_says_not_saved_only_when_it_is_not(qtbot, app, tmp_path, monkeypatch):
    monkeypatch.setattr(QMessageBox, "open", lambda self: None)  # never shown
    app.training.start()
    qtbot.waitUntil(lambda: app.training.trainer.global_step >= 2, timeout=30_000)
    app.training.toggle_pause()
    app.checkpoints.path = tmp_path / "now.pt"
    app.window.actions["save"].trigger()  # taken where the run paused
    qtbot.waitUntil(lambda: (tmp_path / "now.pt").is_file(), timeout=30_000)
    assert app.training.unsaved_steps == 0
    app.window.close()
    box = app.training.quit_box
    assert "not saved" not in box.text()
    assert "is saved" in box.text()
    box.button(QMessageBox.StandardButton.Cancel).click()
    app.training.stop()
    qtbot.waitUntil(lambda: app.training.job is None, timeout=30_000)


def test_closing_while_loading_closes_at_once_and_drops_the_load(qtbot, tiny_root, settings):
    from fmnist_gui.qt.app import build_app

    app = build_app(tiny_root, settings=settings)
    qtbot.addWidget(app.window)
    app.window.show()
    app.start_loading()
    app.window.close()
    assert not app.window.isVisible()
    assert app.backend.cancelled
    # In-process the thread is still joined (the leak check); the real app leaves without it.
    qtbot.waitUntil(lambda: not app.backend.loading, timeout=60_000)
    assert app.window.state == "loading"
    assert not app.insight.ready
    assert app.backend.plugins is None
    assert app.backend.data is None


def test_start_stop_hammered_never_runs_two_workers(qtbot, app):
    jobs_seen = set()
    for i in range(100):
        app.window.actions["start"].trigger()
        if app.training.job is not None:
            jobs_seen.add(id(app.training.job))
        assert len(threads.live_threads()) <= 1, (i, threads.live_threads(), app.window.state)
        app.window.actions["stop"].trigger()
        assert len(threads.live_threads()) <= 1, (i, threads.live_threads(), app.window.state)
        if i % 10 == 0:
            qtbot.wait(5)
    qtbot.waitUntil(lambda: app.window.state == "idle" and app.training.job is None, timeout=30_000)
    assert jobs_seen  # some starts did happen
    assert enabled_actions(app) == set(app.window.actions.table()["idle"]) - ROLLBACK
    # One model throughout; the label says whether Start continues it.
    expected = "&Continue" if app.training.trainer.global_step else "&Start"
    assert app.window.actions["start"].text() == expected


BROKEN_PLUGIN = """
import torch
from fmnist_gui import LossSpec, OptimizerSpec, hookimpl

# Both pass the host's load-time self-test (a few steps) and fail later, in training.
FAIL_AFTER = 20


class _BrokenSGD(torch.optim.SGD):
    calls = 0

    def step(self, closure=None):
        self.calls += 1
        if self.calls > FAIL_AFTER:
            raise RuntimeError("boom in step")
        return super().step(closure)


def _exploding_loss():
    calls = []

    def loss(pred, target):
        calls.append(1)
        if len(calls) > FAIL_AFTER:
            raise ValueError("the loss exploded")
        return torch.nn.functional.cross_entropy(pred, target)
    return loss


@hookimpl
def fmnist_register_optimizers():
    return [OptimizerSpec(name="broken_sgd", label="Broken SGD",
                          factory=lambda params, lr: _BrokenSGD(params, lr=lr))]


@hookimpl
def fmnist_register_losses():
    return [LossSpec(name="exploding", label="Exploding", factory=_exploding_loss)]
"""


@pytest.mark.parametrize(
    ("optimizer", "loss", "message"),
    [
        ("broken_sgd", "cross_entropy", "boom in step"),  # the engine reports a plugin failure
        ("sgd", "exploding", "the loss exploded"),  # an exception escapes the engine: errored
    ],
)
def test_worker_error_becomes_a_dialog(
    qtbot, tmp_path, tiny_root, settings, monkeypatch, optimizer, loss, message
):
    from fmnist_gui.plugins.host import get_plugin_manager

    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "broken.py").write_text(textwrap.dedent(BROKEN_PLUGIN))
    host = get_plugin_manager([plugin_dir])
    assert host.records["broken"].status == "loaded"
    shown = []
    monkeypatch.setattr(QMessageBox, "critical", lambda *a: shown.append(a[1:3]))
    app = open_window(qtbot, tiny_root, host, settings)
    panel = app.training.panel
    panel.optimizer_combo.setCurrentIndex(panel.optimizer_combo.findData(optimizer))
    panel.loss_combo.setCurrentIndex(panel.loss_combo.findData(loss))
    app.training.start()
    qtbot.waitUntil(lambda: app.window.state == "idle" and app.training.job is None, timeout=30_000)
    assert len(shown) == 1
    title, text = shown[0]
    assert title == "Training failed"
    assert message in text
    assert app.window.actions["start"].isEnabled()  # the app carries on
    close_window(qtbot, app)  # and its jobs end with it


def test_settings_remember_the_form(qtbot, tiny_root, plugins, settings):
    first = open_window(qtbot, tiny_root, plugins, settings)
    first.training.panel.lr_edit.setText("0.05")
    first.training.panel.epochs_spin.setValue(7)
    first.training.panel.optimizer_combo.setCurrentIndex(
        first.training.panel.optimizer_combo.findData("adam")
    )
    first.training.panel.optimizer_form.fields["betas"].setText("0.8,0.99")
    first.training.plots.set_smoothing(0.5)
    first.window.close()
    second = open_window(qtbot, None, plugins, settings)
    assert second.backend.data_dir == tiny_root  # the last data folder
    assert second.training.panel.lr_edit.text() == "0.05"
    assert second.training.panel.epochs_spin.value() == 7
    assert second.training.panel.optimizer_combo.currentData() == "adam"
    assert second.training.panel.optimizer_form.fields["betas"].text() == "0.8,0.99"
    assert second.training.plots.smoothing == 0.5
    config = second.training.panel.config()
    assert config.optimizer == "adam"
    assert config.optimizer_params["betas"] == (0.8, 0.99)


def test_reset_asks_when_unsaved_and_clears(qtbot, app, monkeypatch):
    app.training.panel.epochs_spin.setValue(1)
    app.training.start()
    qtbot.waitUntil(lambda: app.window.state == "idle" and app.training.job is None, timeout=30_000)
    assert app.training.plots.point_count > 0
    assert app.training.dirty
    answers = [QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Reset]
    monkeypatch.setattr(QMessageBox, "question", lambda *a: answers.pop(0))
    app.training.reset()
    assert app.training.trainer is not None  # cancelled
    app.training.reset()
    assert app.training.trainer is None
    assert app.training.plots.point_count == 0
    assert app.window.log.toPlainText() == ""
    assert app.training.panel.lr_edit.isEnabled()  # the form is unlocked for a new model


def test_missing_data_offers_choose_folder(
    qtbot, tmp_path, tiny_root, plugins, settings, monkeypatch
):
    from fmnist_gui.qt.features.data import data_dialog

    # No system dataset package either, whatever this machine has installed.
    monkeypatch.setattr("fmnist_gui.training.data.system_dataset_available", lambda *a: False)
    app = open_window(qtbot, tmp_path / "empty", plugins, settings)
    assert app.backend.data is None
    offered = []

    def fake_exec(dialog):
        offered.append(
            [b.text() for b in (dialog.choose_button, dialog.download_button, dialog.copy_button)]
        )
        dialog.choose_folder()
        return dialog.result()

    monkeypatch.setattr(data_dialog.DataDialog, "exec", fake_exec)
    monkeypatch.setattr(
        data_dialog.QFileDialog,
        "getExistingDirectory",
        lambda *a: str(tiny_root / "FashionMNIST" / "raw"),
    )
    assert app.training.ensure_data()
    assert offered
    assert "Download" in offered[0]
    assert app.backend.data_dir == tiny_root
    assert len(app.backend.data.train) == 256


def test_data_dialog_copies_from_the_system_package(qtbot, tmp_path):
    from fmnist_gui.qt.features.data.data_dialog import DataDialog
    from fmnist_gui.training import data as fdata
    from tests.conftest import make_tiny_fashion_mnist

    system = fdata.raw_folder(make_tiny_fashion_mnist(tmp_path / "system", gz=True))
    dialog = DataDialog(tmp_path / "target", "", system_dir=system)
    qtbot.addWidget(dialog)
    assert dialog.copy_button.isEnabled()
    dialog.copy_system()
    assert dialog.result() == DataDialog.DialogCode.Accepted
    assert not fdata.missing_files(tmp_path / "target")


def test_debiased_ema_matches_tensorboard():
    from fmnist_gui.qt.widgets.plotting import debiased_ema

    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    raw, _ = debiased_ema(values, 0.0)
    assert np.allclose(raw, values)
    constant, _ = debiased_ema([2.0] * 5, 0.9)
    assert np.allclose(constant, 2.0)  # debiasing: no ramp up from zero
    whole, _ = debiased_ema(values, 0.6)
    head, state = debiased_ema(values[:2], 0.6)
    tail, _ = debiased_ema(values[2:], 0.6, state)
    assert np.allclose(np.concatenate([head, tail]), whole)
    last, num = 0.0, 0
    for v in values:  # TensorBoard's own formula, written out
        last = last * 0.6 + 0.4 * v
        num += 1
    assert whole[-1] == pytest.approx(last / (1 - 0.6**num))


def test_window_shows_before_torch_is_imported(tmp_path):
    script = textwrap.dedent("""
        import sys
        from PySide6.QtWidgets import QApplication
        from fmnist_gui.qt.app import build_app
        qapp = QApplication([])
        app = build_app()
        app.window.show()
        qapp.processEvents()
        print(app.window.isVisible(), 'torch' in sys.modules, 'pyqtgraph' in sys.modules)
    """)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.stdout.split() == ["True", "False", "False"], out.stderr


def test_python_m_fmnist_gui_is_the_app():
    out = subprocess.run(
        [sys.executable, "-m", "fmnist_gui", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    assert out.stdout.startswith("fmnist-gui ")


def feed(plots, losses, after_step: int = 0) -> None:
    """Hand ``losses`` to the plots as the worker's batch_loss signal does, one per step."""
    for step, loss in enumerate(losses, after_step + 1):
        plots.add_loss(step, float(loss))


def test_batch_losses_wait_in_the_buffer_until_the_next_frame(qtbot):
    from fmnist_gui.qt.features.training.plots import TrainingPlots

    plots = TrainingPlots()
    qtbot.addWidget(plots)
    feed(plots, [2.0, 1.5, 1.25])
    assert plots.point_count == 3
    drawn = plots.raw_curve.getData()[1]
    assert drawn is None or len(drawn) == 0  # a signal only appends; drawing waits
    assert plots.draw(steps_per_epoch=10)
    assert list(plots.raw_curve.getData()[0]) == [1, 2, 3]
    assert list(plots.raw_curve.getData()[1]) == [2.0, 1.5, 1.25]
    assert not plots.draw(steps_per_epoch=10)  # nothing new, nothing drawn


def test_loss_view_follows_the_run_until_the_user_zooms(qtbot):
    from fmnist_gui.qt.features.training.plots import TrainingPlots

    plots = TrainingPlots()
    qtbot.addWidget(plots)
    losses = list(np.linspace(2.3, 0.5, 150))
    feed(plots, losses[:50])
    plots.draw(steps_per_epoch=100, planned_steps=1000)
    view = plots.loss_plot.getPlotItem().getViewBox()
    (x0, x1), (y0, y1) = view.viewRange()
    assert x0 == 0
    assert 100 <= x1 <= 102
    assert y0 <= min(losses[:50])
    assert y1 >= max(losses[:50])
    feed(plots, losses[50:], after_step=50)
    plots.draw(steps_per_epoch=100, planned_steps=1000)
    assert 200 <= view.viewRange()[0][1] <= 203  # the second epoch: the axis moved once
    assert view.viewRange()[1][0] <= min(losses)
    # A zoom by the user is left alone while new points arrive.
    view.setXRange(10, 20, padding=0)
    view.sigRangeChangedManually.emit([True, True])
    feed(plots, [0.4] * 100, after_step=150)
    plots.draw(steps_per_epoch=100, planned_steps=1000)
    assert view.viewRange()[0] == pytest.approx([10, 20])
    assert plots.point_count == 250
    plots.set_x_mode("epochs")
    assert plots.raw_curve.getData()[0][-1] == pytest.approx(2.5)


def test_progress_shows_the_finished_position_when_a_run_ends(qtbot, app):
    app.training.panel.batch_spin.setValue(1)  # 256 batches, ~1 s: texts update every 0.5 s
    app.training.panel.epochs_spin.setValue(1)
    app.training.start()
    qtbot.waitUntil(lambda: app.window.state == "idle" and app.training.job is None, timeout=30_000)
    assert app.training.progress.run_bar.format() == "1/1 epochs (100%)"
    assert app.training.progress.run_bar.value() == 1000
    assert app.training.progress.epoch_bar.format() == "1: 256/256 batches"
    app.training.dirty = False


def test_smoothed_line_is_downsampled_and_ends_within_3_px_of_the_newest_batch(qtbot):
    from fmnist_gui.qt.features.training.plots import TrainingPlots

    plots = TrainingPlots()
    show_widget(qtbot, plots, 700, 500)
    losses = list(np.linspace(2.3, 0.4, 9380) + 0.05 * np.sin(np.arange(9380)))
    feed(plots, losses)
    plots.draw(steps_per_epoch=938, planned_steps=9380)
    qtbot.wait(50)
    drawn = plots.smooth_curve.getData()[0]
    assert len(drawn) < len(losses) // 4  # downsampled: a vertex per ~2 px
    view = plots.loss_plot.getPlotItem().getViewBox()
    (x0, x1), _ = view.viewRange()
    px_per_step = view.width() / (x1 - x0)
    # pyqtgraph drops the last, partial bucket: a gap, but too short to see
    assert 0 <= (len(losses) - drawn[-1]) * px_per_step <= 3


def test_help_lists_every_shortcut_from_the_action_registry(app):
    help_items = [a.text() for a in app.window.menus["help"].actions() if not a.isSeparator()]
    assert help_items == ["&Getting Started", "&Keyboard Shortcuts", "&About"]
    app.window.actions["shortcuts"].trigger()
    table = app.window.help_dialog.findChild(QTableWidget, "shortcuts_table")
    shown = {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}
    registered = {
        a.text().replace("&", "").rstrip("…"): a.shortcut().toString()
        for a in app.window.actions.values()
        if not a.shortcut().isEmpty()
    }
    assert shown == registered
    assert shown["Start"] == "F5"
    assert shown["Quit"] == "Ctrl+Q"
    assert shown["Save"] == "Ctrl+S"
    app.window.actions["guide"].trigger()
    guide = app.window.help_dialog.findChild(QTextBrowser, "guide_text").toPlainText()
    assert "Start (F5)" in guide
    assert "Current model" in guide
    assert "Find LR (Ctrl+L)" in guide


def test_a_window_larger_than_its_screen_is_fitted_into_it(app):
    # As when a geometry saved on a larger screen, or at a 1.5 scale factor, is restored.
    window = app.window
    free = window.screen().availableGeometry()
    window.resize(free.width() + 900, free.height() + 700)
    window.move(free.right() - 50, free.bottom() - 50)
    window.fit_to_screen()
    frame = window.frameGeometry()
    # Fitted, except where the screen is smaller than the window's minimum size.
    assert free.contains(frame.topLeft()), (frame.getRect(), free.getRect())
    assert frame.height() <= free.height()
    assert frame.width() <= max(free.width(), window.minimumSizeHint().width() + 16)
