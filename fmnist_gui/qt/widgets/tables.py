"""Table and refresh helpers shared by the list views (Runs, Compare, Sweep)."""

from __future__ import annotations

import shiboken6
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QTableWidget, QTableWidgetItem

from fmnist_gui.analysis.runs import Listener, RunList


def table_item(table: QTableWidget, row: int, column: int, text: str) -> QTableWidgetItem:
    """The item at (row, column) with ``text``: updated in place, created only when missing.

    Refills never replace items, so Qt never deletes one that Python (or an
    open editor) may still be holding.
    """
    item = table.item(row, column)
    if item is None:
        item = QTableWidgetItem(text)
        table.setItem(row, column, item)
    elif item.text() != text:
        item.setText(text)
    return item


def schedule_refresh(timer: QTimer, runs: RunList, listener: Listener) -> None:
    """Start a view's coalescing timer; a view already deleted by Qt stops listening to ``runs``."""
    if not shiboken6.isValid(timer):
        runs.unsubscribe(listener)
    elif not timer.isActive():
        timer.start()
