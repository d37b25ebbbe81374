"""Schedules in the form, live changes from the window, the lr curve: real window, real engine."""

from __future__ import annotations

import json

import pytest
import torch
from PySide6.QtCore import QSettings

from fmnist_gui import checkpoint as ckpt
from fmnist_gui.cli import main as cli_main
from tests.support.qt_helpers import close_window, open_window

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def wait_idle(qtbot, app) -> None:
    qtbot.waitUntil(lambda: app.window.state == "idle" and app.training.job is None, timeout=60_000)


def choose(combo, name: str) -> None:
    index = combo.findData(name)
    assert index >= 0, name
    combo.setCurrentIndex(index)


def test_the_schedule_chosen_in_the_form_trains_and_is_remembered(qtbot, app, tmp_path, settings):
    panel = app.training.panel
    form = panel.schedule_form
    assert set(form.combo.itemData(i) for i in range(form.combo.count())) >= {
        "constant",
        "step",
        "cosine",
        "warmup_cosine",
        "one_cycle",
    }
    choose(form.combo, "cosine")
    assert list(form.params.fields) == ["eta_min"]
    form.params.fields["eta_min"].setText("oops")
    config, errors = panel.collect()
    assert config is None
    assert "eta_min" in errors[0].message
    form.params.fields["eta_min"].setText("1e-5")
    panel.epochs_spin.setValue(2)
    panel.batch_spin.setValue(64)
    app.training.start()
    wait_idle(qtbot, app)
    trainer = app.training.trainer
    assert trainer.config.scheduler == "cosine"
    assert trainer.scheduler_params == {"eta_min": 1e-5}
    # The current model says which schedule it trains with.
    assert "Cosine" in app.training.model_panel.rows["schedule"].text()
    assert "1e-05" in app.training.model_panel.rows["schedule"].text()
    # The live lr hint follows the schedule.
    last = trainer.optimizer.param_groups[0]["lr"]
    assert app.training.model_panel.live_fields["lr"].placeholderText() == f"now {last:g}"
    assert last < 1e-3
    # The lr curve is the schedule's, one value a batch, falling.
    plots = app.training.plots
    assert plots.lr_points == trainer.global_step == 8
    _, lrs = plots.lr_curve.getData()
    assert list(lrs) == trainer.history.lrs
    assert lrs[-1] < lrs[0]

    # Saved with the form's settings; the next session's form shows it again.
    choose(form.combo, "step")
    form.params.fields["gamma"].setText("0.5")
    choose(form.combo, "cosine")  # the typed values stay with their schedule
    assert form.params.fields["eta_min"].text() == "1e-5"
    panel.save_settings(settings)
    settings.sync()
    app.training.dirty = False
    again = open_window(qtbot, app.backend.data_dir, app.training.plugins, settings)
    try:
        other = again.training.panel.schedule_form
        assert other.combo.currentData() == "cosine"
        assert other.params.fields["eta_min"].text() == "1e-5"
        choose(other.combo, "step")
        assert other.params.fields["gamma"].text() == "0.5"
    finally:
        close_window(qtbot, again)


def test_a_live_lr_change_from_the_window_replays_headless_bit_for_bit(
    qtbot, app, tiny_root, tmp_path, capsys
):
    panel = app.training.panel
    panel.epochs_spin.setValue(2)
    panel.lr_edit.setText("0.01")
    training = app.training
    model = training.model_panel
    assert not model.live_box.isEnabled()  # no model yet
    training.start()
    qtbot.waitUntil(lambda: training.trainer.global_step >= 5, timeout=60_000)
    training.toggle_pause()
    assert app.window.state == "paused"
    assert model.live_box.isEnabled()
    assert list(model.live_fields) == ["lr", *[n for n in model.live_fields if n != "lr"]]
    model.live_fields["lr"].setText("0.05")
    model.apply_button.click()
    trainer = training.trainer
    qtbot.waitUntil(lambda: len(trainer.history.changes) == 1, timeout=30_000)
    first = trainer.history.changes[0]
    assert first["name"] == "lr"
    assert first["value"] == 0.05
    # A second change, while it runs.
    training.toggle_pause()
    qtbot.waitUntil(lambda: trainer.global_step >= first["step"] + 7, timeout=60_000)
    model.live_fields["lr"].setText("0.02")
    model.apply_button.click()
    wait_idle(qtbot, app)
    assert trainer.finished
    assert [c["value"] for c in trainer.history.changes] == [0.05, 0.02]
    steps = [c["step"] for c in trainer.history.changes]
    assert steps[0] >= 5
    assert steps[1] > steps[0]
    # Each is in the log and marked on the loss plot at its step.
    assert "Changed lr to 0.05 after step" in app.window.log.toPlainText()
    assert training.plots.marks == [(steps[0], "lr 0.05"), (steps[1], "lr 0.02")]
    assert trainer.history.lrs[steps[0]] == 0.05
    assert trainer.history.lrs[steps[0] - 1] == 0.01

    # The same run, headless: the recorded changes replayed through the CLI.
    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps(trainer.history.changes))
    path = tmp_path / "replay.pt"
    code = cli_main(
        [
            *("--data-dir", str(tiny_root), "--no-download"),
            *("--seed", "1", "--batch-size", "4", "--epochs", "2", "--lr", "0.01"),
            *("--changes", str(changes), "--save", str(path)),
        ]
    )
    assert code == 0, capsys.readouterr().err
    replay = ckpt.read_checkpoint(path)
    gui = torch.tensor(trainer.history.batch_losses, dtype=torch.float64)
    assert torch.equal(replay["history"]["batch_losses"], gui)
    assert replay["history"]["lrs"].tolist() == trainer.history.lrs
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(replay["model"][name], tensor), name

    # Saved from the window and opened again: the markers come back.
    saved = tmp_path / "gui.pt"
    training.dirty = False
    app.checkpoints.path = saved
    app.window.actions["save"].trigger()
    training.reset()
    assert training.plots.marks == []
    assert app.checkpoints.open(saved)
    assert training.plots.marks == [(steps[0], "lr 0.05"), (steps[1], "lr 0.02")]
    assert training.plots.lr_points == trainer.global_step
    training.dirty = False


def test_a_change_the_optimizer_does_not_allow_is_explained(qtbot, app):
    training = app.training
    model = training.model_panel
    app.training.panel.epochs_spin.setValue(1)
    training.start()
    wait_idle(qtbot, app)
    model.live_fields["lr"].setText("-1")
    model.apply_button.click()
    assert model.live_message.isVisibleTo(app.window)
    assert "lr" in model.live_message.text()
    assert training.trainer.history.changes == []
    # Idle, between runs: applied at once, at this boundary.
    model.live_fields["lr"].setText("0.003")
    model.apply_button.click()
    assert training.trainer.history.changes == [
        {"step": training.trainer.global_step, "name": "lr", "value": 0.003}
    ]
    assert training.trainer.optimizer.param_groups[0]["lr"] == 0.003
    assert model.live_fields["lr"].placeholderText() == "now 0.003"
    training.dirty = False


def test_new_settings_file_without_a_schedule_means_constant(qtbot, tiny_root, plugins, tmp_path):
    settings = QSettings(str(tmp_path / "old.ini"), QSettings.Format.IniFormat)
    settings.setValue("training/optimizer", "adam")
    settings.sync()
    app = open_window(qtbot, tiny_root, plugins, settings)
    try:
        assert app.training.panel.schedule_form.combo.currentData() == "constant"
        config = app.training.panel.config()
        assert config is not None
        assert config.scheduler == "constant"
        assert config.scheduler_params == {}
    finally:
        close_window(qtbot, app)


def run_finder(qtbot, app, steps: int = 120):
    dialog = app.training.find_lr()
    dialog.steps_spin.setValue(steps)
    assert dialog.start()
    assert not dialog.start_button.isEnabled()
    qtbot.waitUntil(lambda: not dialog.running, timeout=120_000)
    return dialog


def test_find_lr_for_a_new_model_sets_the_forms_lr(qtbot, app):
    app.training.panel.batch_spin.setValue(16)
    dialog = run_finder(qtbot, app)
    assert dialog.end is not None
    assert dialog.end.status in ("finished", "exploded")
    lrs, losses = dialog.raw_curve.getData()
    assert len(lrs) == len(dialog.finder.curve.lrs) > 10
    # The view holds the whole descent, from the first smoothed loss to the lowest.
    (_, _), (y0, y1) = dialog.plot.getPlotItem().getViewBox().viewRange()
    smoothed = dialog.finder.curve.smoothed
    descent = smoothed[: smoothed.index(min(smoothed)) + 1]
    assert y0 <= min(descent)
    assert max(descent) <= y1
    assert dialog.suggestion is not None
    assert dialog.suggestion_line.isVisible()
    assert f"{dialog.suggestion:.3g}" in dialog.status.text()
    assert app.training.trainer is None  # no model was made
    dialog.apply_button.click()
    assert app.training.panel.lr_edit.text() == f"{dialog.suggestion:.3g}"
    dialog.close()


def test_find_lr_on_a_paused_model_leaves_it_alone_and_applies_live(qtbot, app):
    training = app.training
    training.panel.optimizer_combo.setCurrentIndex(training.panel.optimizer_combo.findData("adam"))
    training.panel.batch_spin.setValue(16)
    training.start()
    qtbot.waitUntil(lambda: training.trainer.global_step >= 1, timeout=60_000)
    training.toggle_pause()
    trainer = training.trainer
    # Served at the boundary where the paused run waits: from then on nothing moves.
    at_pause = training.driver.request_snapshot()
    qtbot.waitUntil(at_pause.done, timeout=30_000)
    step = at_pause.result()["position"]["global_step"]
    assert trainer.global_step == step
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    dialog = run_finder(qtbot, app, steps=120)
    assert dialog.end is not None
    assert dialog.finder.optimizer_spec.name == "adam"  # the model's own optimizer
    # The test trained its copy; the paused model did not move.
    assert trainer.global_step == step
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert dialog.suggestion is not None
    dialog.apply_button.click()
    qtbot.waitUntil(lambda: len(trainer.history.changes) == 1, timeout=30_000)
    assert trainer.history.changes[0] == {"step": step, "name": "lr", "value": dialog.suggestion}
    training.stop()
    wait_idle(qtbot, app)
    training.dirty = False
    dialog.close()


def test_find_lr_can_be_stopped(qtbot, app):
    dialog = app.training.find_lr()
    dialog.steps_spin.setValue(10_000)
    dialog.end_edit.setText("1e-3")  # too low to explode
    assert dialog.start()
    qtbot.waitUntil(lambda: dialog.finder is not None and len(dialog.finder.curve.lrs) > 5)
    dialog.stop_button.click()
    qtbot.waitUntil(lambda: not dialog.running, timeout=60_000)
    assert dialog.end is not None
    assert dialog.end.status == "stopped"
    assert len(dialog.finder.curve.lrs) < 10_000
    assert dialog.start_button.isEnabled()
    dialog.close()


def test_tab_reaches_a_newly_chosen_schedules_fields_after_the_chooser(qtbot, app):
    form = app.training.panel.schedule_form
    choose(form.combo, "one_cycle")
    fields = list(form.params.fields.values())
    assert len(fields) == 4
    chain = [form.combo]
    for _ in range(len(fields)):
        chain.append(chain[-1].nextInFocusChain())
    assert chain[1:] == fields


BOGUS_LIVE = """
import torch
from fmnist_gui import OptimizerSpec, Param, hookimpl

def make(params, lr, warmth):
    return torch.optim.SGD(params, lr=lr)

@hookimpl
def fmnist_register_optimizers():
    # "warmth" is marked live, but SGD's param groups have no such key.
    return [OptimizerSpec(name="warm_sgd", label="Warm SGD", factory=make,
                          params=(Param("warmth", "float", 1.0, minimum=0, live=True),))]
"""


def test_a_change_the_training_thread_refuses_is_shown(qtbot, app, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    from tests.support.plugin_fixtures import write_plugin

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    source = write_plugin(tmp_path / "downloads", "warm_sgd", BOGUS_LIVE)
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(source), ""))
    )
    app.plugin_menu.actions["install_file"].trigger()
    assert app.backend.plugins.records["warm_sgd"].status == "loaded"
    training = app.training
    choose(training.panel.optimizer_combo, "warm_sgd")
    training.start()
    qtbot.waitUntil(lambda: training.trainer.global_step >= 2, timeout=60_000)
    model = training.model_panel
    assert list(model.live_fields) == ["lr", "warmth"]
    model.live_fields["warmth"].setText("2")
    model.apply_button.click()  # queued for the training thread, which refuses it
    qtbot.waitUntil(lambda: "Not applied" in model.live_message.text(), timeout=30_000)
    assert "warmth" in model.live_message.text()
    assert training.trainer.history.changes == []
    training.stop()
    wait_idle(qtbot, app)
    training.dirty = False
