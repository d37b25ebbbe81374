"""Opening and closing the real app (its window and features), and showing widgets, in tests."""

from __future__ import annotations

from fmnist_gui.qt.app import App, build_app


def open_window(qtbot, root, plugins, settings, **kwargs) -> App:
    """Show the app's window on ``root`` and wait until its data and plugins are loaded."""
    app = build_app(root, plugins=plugins, settings=settings, **kwargs)
    qtbot.addWidget(app.window)
    app.window.show()
    app.start_loading()
    qtbot.waitUntil(lambda: app.window.state == "idle", timeout=60_000)
    return app


def close_window(qtbot, app: App) -> None:
    """Stop whatever runs and wait for its thread to end (the leak fixture checks)."""
    from fmnist_gui.qt.infra import threads

    app.shutdown(30_000)
    qtbot.waitUntil(lambda: app.training.job is None and not app.backend.loading, timeout=30_000)
    # A job queued by the run's last signals (a prediction refresh, an autosave write)
    # may start after shutdown(); it ends by itself. One that never ends still fails.
    qtbot.waitUntil(lambda: not threads.live_threads(), timeout=30_000)


def show_widget(qtbot, widget, width: int, height: int):
    """Show ``widget`` at ``width`` x ``height`` and wait until it is on screen; returns it."""
    qtbot.addWidget(widget)
    widget.resize(width, height)
    widget.show()
    qtbot.waitExposed(widget)
    return widget
