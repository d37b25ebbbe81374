"""One OpenMP thread team at a time: why the app trains as fast in a thread as the CLI.

PyTorch's CPU kernels run on GNU OpenMP (the ``libgomp`` bundled in Linux
wheels). libgomp keeps one pool of helper threads for *each* thread that has
ever started a parallel region, and it counts every pooled helper. When that
count exceeds the CPUs, every helper stops spin-waiting between parallel
regions and sleeps on a futex instead ("throttled" spinning), so each of the
dozens of small parallel regions in a training step pays a wake-up.

The GUI thread touches torch now and then (loading data, drawing
predictions), which leaves its own pool behind. Then the training thread's
pool and the GUI thread's idle pool together exceed the CPUs of a small
machine, and the worker trains about 13% slower than the CLI does in its
main thread (measured on 2 CPUs: ``benchmarks/bench_gui.py``).

:func:`release_thread_pool` hands back the *calling* thread's pool through
the standard ``omp_pause_resource_all`` (OpenMP 5.0), which libgomp
implements as "free the calling thread's pool". The next parallel region on
that thread builds a new pool, which costs one thread start. The GUI calls it
before it starts a worker and on every frame while one trains.

Elsewhere (macOS, Windows, a torch built with another OpenMP, or torch not
imported yet) it does nothing and returns False. Nothing here imports torch.
"""

from __future__ import annotations

import ctypes
import os
import sys

OMP_PAUSE_SOFT = 1  # omp_pause_resource_t; libgomp treats soft and hard alike

_pause = None  # the C function, once found
_looked = False  # True once torch was loaded and the search ran


def _find_pause():
    """``omp_pause_resource_all`` from the libgomp already loaded by torch, or None."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split()[-1] for line in maps if "libgomp" in line}
    except OSError:  # not Linux
        return None
    for path in sorted(paths):
        try:
            # RTLD_NOLOAD: the copy already in the process, never a second one.
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
            fn = lib.omp_pause_resource_all
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_int]
        fn.restype = ctypes.c_int
        return fn
    return None


def release_thread_pool() -> bool:
    """Free the calling thread's idle OpenMP helper threads; True when done.

    Safe at any time outside a parallel region (libgomp refuses, returning an
    error, inside one); a no-op when the thread has no pool.
    """
    global _pause, _looked
    if not _looked:
        if "torch" not in sys.modules:
            return False  # libgomp arrives with torch; look again later
        _looked = True
        _pause = _find_pause()
    if _pause is None:
        return False
    return _pause(OMP_PAUSE_SOFT) == 0
