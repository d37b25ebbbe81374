"""A registry of the QThreads this app starts, so tests can check none outlives its test."""

from __future__ import annotations

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
        try:
            alive.append(t) if t.isRunning() else None
        except RuntimeError:  # the C++ object is already gone
            pass
    return alive
