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
machine, and the worker trains slower than the CLI does in its main thread;
``benchmarks/bench_gui.py`` measures the GUI epoch against the headless one.

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

_pauses: list = []  # omp_pause_resource_all of each libgomp in the process
_looked = False  # True once torch's native part was loaded and the search ran


def loaded_libgomps() -> list[str]:
    """Paths of the libgomp copies mapped into this process (Linux), torch's first."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            # address perms offset dev inode path: the path may contain spaces
            fields = (line.rstrip("\n").split(maxsplit=5) for line in maps)
            paths = {
                f[5].removesuffix(" (deleted)")
                for f in fields
                if len(f) == 6 and "libgomp" in os.path.basename(f[5])
            }
    except OSError:  # not Linux
        return []
    # Another package (scikit-learn, say) may bring its own copy: each keeps pools
    # of its own, so each is released; torch's, the one that trains, comes first.
    return sorted(paths, key=lambda p: ("/torch/" not in p, p))


def _find_pauses() -> list:
    found = []
    for path in loaded_libgomps():
        try:
            # RTLD_NOLOAD: the copy already in the process, never a second one.
            fn = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY).omp_pause_resource_all
        except (OSError, AttributeError):  # gone, or a libgomp older than OpenMP 5.0
            continue
        fn.argtypes = [ctypes.c_int]
        fn.restype = ctypes.c_int
        found.append(fn)
    return found


def release_thread_pool() -> bool:
    """Free the calling thread's idle OpenMP helper threads; True when done.

    Safe at any time outside a parallel region (libgomp refuses, returning an
    error, inside one); a no-op when the thread has no pool. Other threads'
    pools, and their parallel regions in flight, are not touched.
    """
    global _pauses, _looked
    if not _looked:
        # torch._C is registered only once its library (which needs libgomp) is
        # loaded: earlier, as while torch is being imported in another thread, the
        # search would miss and remember the miss.
        if "torch._C" not in sys.modules:
            return False
        _looked = True
        _pauses = _find_pauses()
    done = [pause(OMP_PAUSE_SOFT) == 0 for pause in _pauses]
    return bool(done) and all(done)
