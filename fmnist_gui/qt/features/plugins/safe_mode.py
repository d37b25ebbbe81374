"""Offering safe mode when the last start died while loading plugins.

The engine side is ``fmnist_gui.plugins.safemode``: ``take_previous_crash()``
before loading, then ``get_plugin_manager(safe_mode=True)`` loads the built-ins
only. This module only asks. ``QMessageBox`` is looked up at call time so that
tests can patch it.
"""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from fmnist_gui.plugins.safemode import CrashReport, take_previous_crash


def ask_for_safe_mode(parent: QWidget | None, crash: CrashReport) -> bool:
    """Tell the user how the last start ended; True if they choose safe mode."""
    answer = QMessageBox.question(
        parent,
        "Start in safe mode?",
        f"{crash.message}\n\nStart in safe mode? Only the built-in plugins are loaded, "
        "and the plugin manager opens so that you can disable or remove the plugin. "
        "Choose No to load every plugin as usual.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.Yes,
    )
    return answer == QMessageBox.StandardButton.Yes


def choose_safe_mode(parent: QWidget | None = None) -> bool:
    """At start-up, before plugins load: whether to load the built-ins only.

    Asks only if the last start died while loading plugins; the question is
    asked once per such start (``take_previous_crash`` removes its marker).
    """
    crash = take_previous_crash()
    return crash is not None and ask_for_safe_mode(parent, crash)


__all__ = ["ask_for_safe_mode", "choose_safe_mode"]
