"""Autosave every N minutes of running, mid-epoch, written off the GUI thread."""

from __future__ import annotations

import pytest

from fmnist_gui import checkpoint as ckpt
from fmnist_gui.qt.features.checkpoints.controller import (
    AUTOSAVE_MINUTES_KEY,
    DEFAULT_AUTOSAVE_MINUTES,
    autosave_minutes,
)

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
