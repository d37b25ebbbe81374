"""Python's cyclic garbage collector, run by the GUI thread only, and paused at start-up.

**Which thread collects.** Python's automatic collector runs in whichever
thread happens to allocate when a generation's threshold is crossed: a
training, loading or sweep thread as often as the GUI thread. When that
collection finds a dead cycle that holds Qt objects (a closed dialog, an old
window's menu), their C++ destructors run in that thread: each takes Qt's lock
for the object and then asks for the GIL, while the GUI thread, holding the GIL,
may be deleting a neighbour and waiting for that very lock. That deadlock was
caught twice in the test suite, and `py-spy dump --native` showed it: one thread
in ``gc_collect_main`` -> ``QObject::~QObject`` -> ``GilState::acquire``, the
GUI thread in ``QObject::~QObject`` -> ``QBasicMutex::lockInternal``. The app
could hit it too. The cure is an old one for Python Qt apps: turn the automatic
collector off, and let the GUI thread run :func:`collect_due` from a timer,
which does what the automatic collector would, generation by generation.

**Start-up.** Until Ready nothing is collected at all. Start-up imports torch,
pyqtgraph and the plugins: some 225,000 objects that live as long as the
process, and almost no garbage cycles; the collector would scan them over and
over. Measured on a 2-core machine (medians of 8, interleaved): ``import torch,
pyqtgraph`` takes 2.20 s with the collector and 1.80 s without. At Ready,
:func:`freeze_start_up` moves them into the permanent generation, which no
collection scans again: a full collection took 130 ms with them, 0 ms after.

Nothing here imports Qt: the app owns the timer, tests call it between tests.
"""

from __future__ import annotations

import gc

_disabled_by_us = False


def stop_automatic() -> None:
    """Turn the automatic collector off: from now on only :func:`collect_due` collects."""
    global _disabled_by_us
    if gc.isenabled():
        gc.disable()
        _disabled_by_us = True


def restore_automatic() -> None:
    """Turn the automatic collector back on, if :func:`stop_automatic` turned it off."""
    global _disabled_by_us
    if _disabled_by_us:
        _disabled_by_us = False
        gc.enable()


def freeze_start_up() -> None:
    """Move every object alive now into the permanent generation (``gc.freeze``)."""
    gc.freeze()


def collect_due() -> int:
    """Collect what the automatic collector would collect now, in this thread.

    As CPython decides: nothing until generation 0's count passes its threshold;
    then the oldest generation whose count passes its own (a collection of a
    generation takes the younger ones with it). A threshold of 0 is never passed:
    Python 3.14's incremental collector reports a third threshold of 0 that means
    nothing, and generation 2 there would be a full collection on every call.
    Returns the unreachable objects found.
    """
    thresholds = gc.get_threshold()
    counts = gc.get_count()
    due = [g for g in range(3) if thresholds[g] and counts[g] > thresholds[g]]
    if not due or due[0] != 0:
        return 0
    return gc.collect(due[-1])
