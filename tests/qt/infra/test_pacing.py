"""FramePacer: the frame timer slows down when frames are costly and speeds up when cheap."""

from __future__ import annotations

import time

from PySide6.QtCore import QTimer

from fmnist_gui.qt.infra.pacing import MAX_MS, MIN_MS, START_MS, FramePacer


def burn_cpu(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU time (not wall time: load does not matter)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_costly_frames_slow_the_timer_and_cheap_ones_bring_it_back(qapp):
    timer = QTimer()
    pacer = FramePacer(timer)
    assert timer.interval() == START_MS
    for _ in range(5):  # 10 ms of GUI work per frame: 2.5% of the time needs 400 ms
        pacer.frame()
        burn_cpu(0.010)
    pacer.frame()
    assert timer.interval() == MAX_MS
    assert pacer.cost >= 0.010
    for _ in range(30):  # next to nothing between frames
        pacer.frame()
    assert timer.interval() == MIN_MS
    pacer.restart()
    assert timer.interval() == START_MS
    assert pacer.cost == 0.0
