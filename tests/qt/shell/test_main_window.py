"""The desktop window, offscreen, on tiny data: real widgets, real threads, real plugins."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

from fmnist_gui.qt.infra import threads
from fmnist_gui.qt.shell import main_window as mw
from fmnist_gui.qt.shell.main_window import ACTION_STATES, MainWindow
from tests.support.qt_helpers import open_window

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def enabled_actions(w: MainWindow) -> set[str]:
    return {name for name, action in w.actions.items() if action.isEnabled()}


def test_action_states_follow_the_table(window):
    for state, allowed in ACTION_STATES.items():
        window.set_state(state)
        assert enabled_actions(window) == set(allowed) - window.unavailable, state
    window.set_state("idle")
    # A feature wiring Save makes it available where the table allows it.
    window.unavailable.discard("save")
    window.update_actions()
    assert window.actions["save"].isEnabled()
    window.set_state("loading")
    assert not window.actions["save"].isEnabled()
    window.set_state("idle")


def test_menus_shortcuts_and_extension_points(window):
    assert set(window.menus) == {"file", "training", "plugins", "help"}
    assert [a.objectName() for a in window.menus["plugins"].actions()] == [
        "plugins_manage",
        "plugins_install_file",
        "plugins_install_package",
    ]
    shortcuts = {
        name: window.actions[name].shortcut().toString()
        for name in ("start", "stop", "open", "save", "save_as", "quit")
    }
    assert shortcuts == {
        "start": "F5",
        "stop": "Shift+F5",
        "open": "Ctrl+O",
        "save": "Ctrl+S",
        "save_as": "Ctrl+Shift+S",
        "quit": "Ctrl+Q",
    }
    assert window.tabs.tabText(0) == "Training"
    # Combos come from the plugin registry, not from a list in the GUI.
    combo = window.panel.optimizer_combo
    assert [combo.itemData(i) for i in range(combo.count())] == list(window.plugins.optimizers)
    about = window.about_text()
    assert "PyTorch" in about and "builtin_optimizers" in about


def test_optimizer_form_is_built_from_the_schema(window):
    panel = window.panel
    for index in range(panel.optimizer_combo.count()):
        panel.optimizer_combo.setCurrentIndex(index)
        spec = window.plugins.optimizers[panel.optimizer_combo.currentData()]
        assert list(panel.optimizer_form.fields) == [p.name for p in spec.params]
        for param in spec.params:
            field = panel.optimizer_form.fields[param.name]
            assert param.help in field.toolTip()


def test_start_batches_arrive_in_order_then_stop_and_continue(qtbot, window):
    window.batch_signal_interval = 0  # every batch, to check the order
    seen = []
    window.batch_progress.connect(seen.append)
    with qtbot.waitSignal(window.state_changed, timeout=10_000):
        window.actions["start"].trigger()
    assert window.state == "running"
    trainer = window.trainer
    qtbot.waitUntil(lambda: len(seen) >= 10, timeout=30_000)
    window.actions["stop"].trigger()
    assert window.state == "stopping"
    qtbot.waitUntil(lambda: window.state == "idle", timeout=30_000)
    steps = [e.step for e in seen]
    assert steps == list(range(1, len(steps) + 1))
    assert trainer.global_step >= steps[-1]
    assert window.plots.point_count == trainer.global_step  # the frame timer caught up
    assert "Epoch 1\n-------------------------------" in window.log.toPlainText()
    assert "Start continues the same model" in window.log.toPlainText()
    assert window.actions["start"].text() == "&Continue"

    # Start after Stop continues the very same trainer, from the same step.
    stopped_at = trainer.global_step
    seen.clear()
    window.actions["start"].trigger()
    qtbot.waitUntil(lambda: len(seen) >= 3, timeout=30_000)
    window.stop()
    qtbot.waitUntil(lambda: window.state == "idle", timeout=30_000)
    assert window.trainer is trainer
    assert seen[0].step == stopped_at + 1
    assert "Continuing the same model" in window.log.toPlainText()


def test_pause_and_resume(qtbot, window):
    window.start()
    trainer = window.trainer
    qtbot.waitUntil(lambda: trainer.global_step >= 3, timeout=30_000)
    window.actions["pause"].trigger()
    assert window.state == "paused"
    assert window.actions["pause"].text() == "&Resume"
    assert enabled_actions(window) >= {"pause", "stop"}
    assert "start" not in enabled_actions(window)
    qtbot.wait(200)  # a batch under way when Pause came may still finish
    held = trainer.global_step
    qtbot.wait(300)
    assert trainer.global_step == held
    window.actions["pause"].trigger()
    assert window.state == "running"
    qtbot.waitUntil(lambda: trainer.global_step > held, timeout=30_000)
    window.stop()
    qtbot.waitUntil(lambda: window.state == "idle", timeout=30_000)


@pytest.mark.parametrize(
    ("field", "text", "expected"),
    [
        ("lr", "-1", "learning rate"),
        ("lr", "fast", "not a number"),
        ("momentum", "2", "momentum"),
    ],
)
def test_bad_hyperparameters_are_refused(qtbot, window, field, text, expected):
    panel = window.panel
    widget = panel.lr_edit if field == "lr" else panel.optimizer_form.fields[field]
    widget.setText(text)
    window.start()
    assert window.state == "idle" and window.job is None and window.trainer is None
    assert widget.property("invalid") is True
    assert expected in panel.message.text()
    assert panel.message.isVisibleTo(window)
    widget.clear()
    qtbot.keyClicks(widget, "0.001" if field == "lr" else "0.5")  # editing clears the mark
    assert widget.property("invalid") is False


def test_optimizer_refusing_its_settings_is_reported(window, monkeypatch):
    shown = []
    monkeypatch.setattr(mw.QMessageBox, "critical", lambda *a: shown.append(a[2]))
    window.panel.optimizer_form.fields["nesterov"].setChecked(True)  # needs momentum > 0
    window.start()
    assert window.trainer is None and window.job is None
    assert shown and "refused its settings" in shown[0]


def test_closing_during_training_stops_and_closes(qtbot, window, monkeypatch):
    asked = []

    def answer(*args):
        asked.append(args[1])
        return QMessageBox.StandardButton.No if len(asked) == 1 else QMessageBox.StandardButton.Yes

    monkeypatch.setattr(mw.QMessageBox, "question", answer)
    window.start()
    qtbot.waitUntil(lambda: window.trainer.global_step >= 2, timeout=30_000)
    window.close()  # first answer: No
    assert window.isVisible() and window.state == "running"
    window.close()  # second answer: Yes
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=10_000)
    assert window.job is None
    assert len(asked) == 2
    assert not threads.live_threads()


def test_start_stop_hammered_never_runs_two_workers(qtbot, window):
    jobs_seen = set()
    for i in range(100):
        window.actions["start"].trigger()
        if window.job is not None:
            jobs_seen.add(id(window.job))
        assert len(threads.live_threads()) <= 1, (i, threads.live_threads(), window.state)
        window.actions["stop"].trigger()
        assert len(threads.live_threads()) <= 1, (i, threads.live_threads(), window.state)
        if i % 10 == 0:
            qtbot.wait(5)
    qtbot.waitUntil(lambda: window.state == "idle" and window.job is None, timeout=30_000)
    assert jobs_seen  # some starts did happen
    assert enabled_actions(window) == set(ACTION_STATES["idle"]) - window.unavailable
    # One model throughout; the label says whether Start continues it.
    expected = "&Continue" if window.trainer.global_step else "&Start"
    assert window.actions["start"].text() == expected


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
    monkeypatch.setattr(mw.QMessageBox, "critical", lambda *a: shown.append(a[1:3]))
    window = open_window(qtbot, tiny_root, host, settings)
    panel = window.panel
    panel.optimizer_combo.setCurrentIndex(panel.optimizer_combo.findData(optimizer))
    panel.loss_combo.setCurrentIndex(panel.loss_combo.findData(loss))
    window.start()
    qtbot.waitUntil(lambda: window.state == "idle" and window.job is None, timeout=30_000)
    assert len(shown) == 1
    title, text = shown[0]
    assert title == "Training failed" and message in text
    assert window.actions["start"].isEnabled()  # the app carries on


def test_settings_remember_the_form(qtbot, tiny_root, plugins, settings):
    first = open_window(qtbot, tiny_root, plugins, settings)
    first.panel.lr_edit.setText("0.05")
    first.panel.epochs_spin.setValue(7)
    first.panel.optimizer_combo.setCurrentIndex(first.panel.optimizer_combo.findData("adam"))
    first.panel.optimizer_form.fields["betas"].setText("0.8,0.99")
    first.plots.set_smoothing(0.5)
    first.close()
    second = open_window(qtbot, None, plugins, settings)
    assert second.data_dir == tiny_root  # the last data folder
    assert second.panel.lr_edit.text() == "0.05"
    assert second.panel.epochs_spin.value() == 7
    assert second.panel.optimizer_combo.currentData() == "adam"
    assert second.panel.optimizer_form.fields["betas"].text() == "0.8,0.99"
    assert second.plots.smoothing == 0.5
    config = second.panel.config()
    assert config.optimizer == "adam" and config.optimizer_params["betas"] == (0.8, 0.99)


def test_reset_asks_when_unsaved_and_clears(qtbot, window, monkeypatch):
    window.panel.epochs_spin.setValue(1)
    window.start()
    qtbot.waitUntil(lambda: window.state == "idle" and window.job is None, timeout=30_000)
    assert window.plots.point_count > 0 and window.dirty
    answers = [QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Reset]
    monkeypatch.setattr(mw.QMessageBox, "question", lambda *a: answers.pop(0))
    window.reset()
    assert window.trainer is not None  # cancelled
    window.reset()
    assert window.trainer is None and window.plots.point_count == 0
    assert window.log.toPlainText() == ""
    assert window.panel.lr_edit.isEnabled()  # the form is unlocked for a new model


def test_missing_data_offers_choose_folder(
    qtbot, tmp_path, tiny_root, plugins, settings, monkeypatch
):
    from fmnist_gui.qt.features.data import data_dialog

    # No system dataset package either, whatever this machine has installed.
    monkeypatch.setattr("fmnist_gui.training.data.system_dataset_available", lambda *a: False)
    window = open_window(qtbot, tmp_path / "empty", plugins, settings)
    assert window.data is None
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
    assert window.ensure_data()
    assert offered and "Download" in offered[0]
    assert window.data_dir == tiny_root and len(window.data.train) == 256


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
    from fmnist_gui.qt.features.training.plots import debiased_ema

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
        from fmnist_gui.qt.shell.main_window import MainWindow
        app = QApplication([])
        w = MainWindow()
        w.show()
        app.processEvents()
        print(w.isVisible(), 'torch' in sys.modules, 'pyqtgraph' in sys.modules)
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
    assert out.returncode == 0 and out.stdout.startswith("fmnist-gui ")


def test_loss_view_follows_the_run_until_the_user_zooms(qtbot):
    from fmnist_gui.qt.features.training.plots import TrainingPlots

    plots = TrainingPlots()
    qtbot.addWidget(plots)
    losses = list(np.linspace(2.3, 0.5, 150))
    plots.sync(losses[:50], (), steps_per_epoch=100, planned_steps=1000)
    view = plots.loss_plot.getPlotItem().getViewBox()
    (x0, x1), (y0, y1) = view.viewRange()
    assert x0 == 0 and 100 <= x1 <= 102  # up to the end of the current epoch
    assert y0 <= min(losses[:50]) and y1 >= max(losses[:50])
    plots.sync(losses, (), steps_per_epoch=100, planned_steps=1000)
    assert 200 <= view.viewRange()[0][1] <= 203  # the second epoch: the axis moved once
    assert view.viewRange()[1][0] <= min(losses)
    # A zoom by the user is left alone while new points arrive.
    view.setXRange(10, 20, padding=0)
    view.sigRangeChangedManually.emit([True, True])
    plots.sync(losses + [0.4] * 100, (), steps_per_epoch=100, planned_steps=1000)
    assert view.viewRange()[0] == pytest.approx([10, 20])
    assert plots.point_count == 250
    plots.set_x_mode("epochs")
    assert plots.raw_curve.getData()[0][-1] == pytest.approx(2.5)


def test_progress_shows_the_finished_position_when_a_run_ends(qtbot, window):
    window.panel.batch_spin.setValue(1)  # 256 batches, ~1 s: texts update every 0.5 s
    window.panel.epochs_spin.setValue(1)
    window.start()
    qtbot.waitUntil(lambda: window.state == "idle" and window.job is None, timeout=30_000)
    assert window.progress.run_bar.format() == "1/1 epochs (100%)"
    assert window.progress.run_bar.value() == 1000
    assert window.progress.epoch_bar.format() == "1: 256/256 batches"
    window.dirty = False


def test_smoothed_line_is_downsampled_and_ends_within_3_px_of_the_newest_batch(qtbot):
    from fmnist_gui.qt.features.training.plots import TrainingPlots

    plots = TrainingPlots()
    qtbot.addWidget(plots)
    plots.resize(700, 500)
    plots.show()
    qtbot.waitExposed(plots)
    losses = list(np.linspace(2.3, 0.4, 9380) + 0.05 * np.sin(np.arange(9380)))
    plots.sync(losses, (), steps_per_epoch=938, planned_steps=9380)
    qtbot.wait(50)
    drawn = plots.smooth_curve.getData()[0]
    assert len(drawn) < len(losses) // 4  # downsampled: a vertex per ~2 px
    view = plots.loss_plot.getPlotItem().getViewBox()
    (x0, x1), _ = view.viewRange()
    px_per_step = view.width() / (x1 - x0)
    # pyqtgraph drops the last, partial bucket: a gap, but too short to see
    assert 0 <= (len(losses) - drawn[-1]) * px_per_step <= 3
