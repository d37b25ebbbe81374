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
