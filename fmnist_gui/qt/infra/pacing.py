"""Frame pacing: the plots redraw as often as the GUI thread can afford while a worker trains.

Every frame (draw the losses that arrived, ``setData``, repaint) runs in the GUI
thread and holds the GIL that the training thread needs between two torch
operations; on a machine whose cores the training already fills, it also
takes a core from it. So the frame rate is not a constant: ``FramePacer``
measures what the GUI thread really spent (its CPU time from one frame to
the next, painting and everything else included) and sets the timer's
interval so that this stays near ``duty`` of the wall time, between 30
frames per second and 4. Everything the GUI thread does between two frames
counts, not only drawing: the per-batch signals, the user hovering a plot, a second paced
view (a race); when they cost more, the frames slow down, since the budget
is the thread's. The measurement is smoothed over frames, which also evens out a
coarse ``thread_time`` clock (15.6 ms steps on Windows).

A frame that costs 1 ms of GUI-thread CPU gets 25 fps; on a small machine
whose frames cost several milliseconds the plots slow to a few frames per
second, which keeps the GUI epoch close to the headless one
(``benchmarks/bench_gui.py`` measures both).
"""

from __future__ import annotations

import time

from PySide6.QtCore import QTimer

MIN_MS = 33  # 30 frames per second at most
MAX_MS = 250  # 4 frames per second at least: the curve still moves
START_MS = 100
DUTY = 0.025  # the GUI thread's share of the time, while training, that frames may take


class FramePacer:
    """Adapts ``timer``'s interval to the measured cost of a frame; call ``frame()`` in each."""

    def __init__(
        self,
        timer: QTimer,
        duty: float = DUTY,
        min_ms: int = MIN_MS,
        max_ms: int = MAX_MS,
        start_ms: int = START_MS,
    ) -> None:
        self.timer = timer
        self.duty, self.min_ms, self.max_ms, self.start_ms = duty, min_ms, max_ms, start_ms
        self.cost = 0.0  # seconds of GUI-thread CPU per frame, smoothed
        self._last_cpu: float | None = None
        self.restart()

    def restart(self) -> None:
        """Forget the measurements (a new run); the next frames measure afresh."""
        self._last_cpu = None
        self.cost = 0.0
        self.timer.setInterval(self.start_ms)

    def frame(self) -> None:
        """Call once per frame: measures the GUI thread's CPU since the last call."""
        cpu = time.thread_time()
        if self._last_cpu is not None:
            spent = cpu - self._last_cpu
            # Smoothed, so that one expensive frame (an epoch's end, a zoom) does
            # not halve the frame rate for long.
            self.cost = spent if self.cost == 0.0 else 0.7 * self.cost + 0.3 * spent
            wanted = 1000.0 * self.cost / self.duty
            self.timer.setInterval(int(min(max(wanted, self.min_ms), self.max_ms)))
        self._last_cpu = cpu
