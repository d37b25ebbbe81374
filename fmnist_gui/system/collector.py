"""Python's cyclic garbage collector, paused while the app starts, then frozen.

Start-up imports torch, pyqtgraph and the plugins: some 225,000 objects that
live as long as the process, and almost no garbage cycles. The collector still
runs its generations over and over as those allocations pile up. Measured on
this 2-core machine (medians of 8, interleaved): ``import torch, pyqtgraph``
takes 2.20 s with the collector and 1.80 s without, and Ready comes 0.7 s
sooner (``benchmarks/bench_gui.py --startup-only``).

Once loaded, :func:`resume` turns it back on and freezes what start-up left
(``gc.freeze``): those objects move to a permanent generation that collections
no longer scan. Without that, each full collection walks them all, 130 ms in
whichever thread triggers it, the GUI thread included, where it is a visible
stall while training draws. Objects made after start-up are collected as usual.

Only the app's ``main`` uses this; a test process that builds many windows
keeps the collector as it is.
"""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    """Turn the collector off until :func:`resume`, unless it was off already."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """Turn the collector back on if :func:`pause` turned it off, and freeze the survivors.

    Called once start-up is over; calling it again does nothing.
    """
    global _paused
    if not _paused:
        return
    _paused = False
    gc.freeze()
    gc.enable()
