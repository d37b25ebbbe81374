"""The new-model form in the real window, offscreen: what it tells the user, where Tab goes."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QAbstractSpinBox, QWidget

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def tab_stops_after(widget: QWidget, window: QWidget, count: int) -> list[QWidget]:
    """The next ``count`` widgets Tab reaches from ``widget`` (Qt's own focus chain)."""
    stops: list[QWidget] = []
    current = widget
    while len(stops) < count:
        current = current.nextInFocusChain()
        if current is widget:
            break
        if isinstance(current.parent(), QAbstractSpinBox):
            continue  # the spin box's own line edit: the spin box itself is the stop
        if (
            current.focusPolicy() & Qt.FocusPolicy.TabFocus
            and current.isVisibleTo(window)
            and current.isEnabled()
        ):
            stops.append(current)
    return stops


def test_tab_goes_from_shuffle_to_the_hyperparameters_in_reading_order(app, qtbot):
    panel = app.training.panel
    combo = panel.optimizer_combo
    combo.setCurrentIndex(combo.findData("adam"))  # fields built after the window was
    form = panel.optimizer_form
    qtbot.waitUntil(
        lambda: all(f.isVisibleTo(app.window) for f in form.fields.values()), timeout=5_000
    )
    fields = list(form.fields.values())
    assert len(fields) >= 3
    stops = tab_stops_after(panel.shuffle_check, app.window, len(fields))
    assert stops == fields
    chain = panel.tab_chain()
    first_stops = tab_stops_after(chain[0], app.window, 7)
    assert first_stops == chain[1:8]  # the form's fields in reading order


def test_an_out_of_range_batch_size_is_reported_not_silently_reverted(app, qtbot):
    panel = app.training.panel
    spin = panel.batch_spin
    spin.setValue(64)
    spin.setFocus()
    spin.selectAll()
    QTest.keyClicks(spin, "0")
    QTest.keyClick(spin, Qt.Key.Key_Return)
    assert spin.value() == 64
    qtbot.waitUntil(lambda: panel.message.isVisibleTo(app.window), timeout=5_000)
    text = panel.message.text()
    assert "Batch size 0 is not allowed" in text
    assert "kept 64" in text
