"""Opening and closing a real MainWindow in tests (offscreen)."""

from __future__ import annotations

from fmnist_gui.qt.shell.main_window import MainWindow


def open_window(qtbot, root, plugins, settings, **kwargs) -> MainWindow:
    """Show the window on ``root`` and wait until its data and plugins are loaded."""
    window = MainWindow(root, plugins=plugins, settings=settings, **kwargs)
    qtbot.addWidget(window)
    window.show()
    window.start_loading()
    qtbot.waitUntil(lambda: window.state == "idle", timeout=60_000)
    return window


def close_window(qtbot, window: MainWindow) -> None:
    """Stop whatever runs and wait for its thread to end (the leak fixture checks)."""
    window.shutdown(30_000)
    qtbot.waitUntil(lambda: window.job is None and window._loader is None, timeout=30_000)
