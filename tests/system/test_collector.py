"""collect_due: what the automatic collector would collect now, in the calling thread."""

from __future__ import annotations

import gc
import weakref

from fmnist_gui.system import collector


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only a collection frees it


def test_collects_a_due_generation_and_nothing_before_it_is_due():
    assert not gc.isenabled()  # the suite collects from the main thread only (conftest)
    gc.collect()
    dead = Node()
    alive = weakref.ref(dead)
    del dead
    assert collector.collect_due() == 0  # one object allocated: nothing is due yet
    assert alive() is not None
    kept = [[] for _ in range(gc.get_threshold()[0] + 100)]
    assert collector.collect_due() >= 1
    assert alive() is None
    assert kept


def test_a_due_older_generation_is_collected_with_the_younger_ones():
    gc.collect()
    threshold0, threshold1, _ = gc.get_threshold()
    kept = []
    for _ in range(threshold1 + 1):  # as many generation-0 collections as make 1 due
        kept.append([[] for _ in range(threshold0 + 10)])
        gc.collect(0)
    assert gc.get_count()[1] > threshold1
    assert collector.collect_due() == 0  # due only once generation 0 is
    kept.append([[] for _ in range(threshold0 + 10)])
    collector.collect_due()
    assert gc.get_count()[:2] == (0, 0)  # generation 1 was collected, and 0 with it


def test_a_generation_whose_threshold_is_zero_is_never_due():
    # Python 3.14's incremental collector reports its third threshold as 0: that
    # must not turn every due collection into a full one.
    saved = gc.get_threshold()
    full: list[int] = []

    def note(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(1)

    gc.collect()
    gc.callbacks.append(note)
    try:
        gc.set_threshold(saved[0], saved[1], 0)
        kept = []
        for _ in range(2 * saved[1] + 3):  # enough to make generation 1 due twice
            kept.append([[] for _ in range(saved[0] + 10)])
            collector.collect_due()
        assert gc.get_count()[2] > 0  # counted: "count > threshold 0" would call it due
        assert full == []
        assert gc.get_count()[0] == 0  # the young generation was still collected
    finally:
        gc.callbacks.remove(note)
        gc.set_threshold(*saved)
