"""A registry of the QThreads this app starts, so tests can check none outlives its test."""

from __future__ import annotations

import contextlib
import weakref

from PySide6.QtCore import QThread

_threads: weakref.WeakSet[QThread] = weakref.WeakSet()


def track(thread: QThread) -> QThread:
    """Remember ``thread`` (weakly) and return it."""
    _threads.add(thread)
    return thread


def live_threads() -> list[QThread]:
    alive = []
    for t in list(_threads):
        with contextlib.suppress(RuntimeError):  # the C++ object is already gone
            if t.isRunning():
                alive.append(t)
    return alive
