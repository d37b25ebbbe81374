"""What a console entry point owes the whole process, since plugins run inside it.

Two misdeeds of plugin code can only be handled at this level:

* **A plugin raising ``KeyboardInterrupt``.** The boundaries where plugin code
  runs (``fmnist_gui.plugins.boundary``) blame any exception on the plugin, but a
  real Ctrl-C must still stop the program. Python's default SIGINT handler raises
  a plain ``KeyboardInterrupt`` in whatever frame is running, plugin code
  included, so the two look alike. ``console_main`` therefore installs
  ``sigint_handler``, which raises ``CtrlC`` (a ``KeyboardInterrupt``
  subclass) instead: only that one is let through as the user's. A marked
  exception, not a "SIGINT seen" flag, because a flag would stay set after a
  Ctrl-C that was handled gracefully (``--save`` stops at the next batch), and
  would then excuse a plugin's own ``KeyboardInterrupt`` later on.
* **A plugin starting a non-daemon thread.** The interpreter joins every such
  thread before the process may exit, so ``fmnist-train`` would hang after
  "Done!" for as long as the plugin's thread lives. ``console_main`` ends the
  process with ``os._exit`` once the command is done if such a thread is left.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
import traceback
from typing import Protocol


class CtrlC(KeyboardInterrupt):
    """The user pressed Ctrl-C (a real SIGINT): never a plugin's failure."""


def sigint_handler(signum: int, frame: object) -> None:
    """Python's default SIGINT behaviour, marked as the user's: raise ``CtrlC``."""
    raise CtrlC


def is_ctrl_c(exc: BaseException) -> bool:
    """True for the interrupt ``sigint_handler`` raised; false for one plugin code raised."""
    return isinstance(exc, CtrlC)


class ConsoleMain(Protocol):
    """A console script's ``main``: ``argv`` defaults to the process's arguments."""

    def __call__(self, argv: list[str] | None = None) -> int: ...


def console_main(main: ConsoleMain) -> ConsoleMain:
    """Wrap a console script's ``main(argv)`` with the process-level duties above.

    Only a call without ``argv`` (the console script itself, ``python -m``) owns
    the process: a caller that passes ``argv`` (a test, a script) keeps its own
    SIGINT handler and its own threads, and gets the exit code returned.
    """

    @functools.wraps(main)
    def entry(argv: list[str] | None = None) -> int:
        if argv is not None:
            return main(argv)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, sigint_handler)
        try:
            code = main(None)
        except SystemExit as exc:  # argparse's --help and --version, as sys.exit() would
            code = _exit_code(exc.code)
        except BaseException:  # noqa: BLE001 - a bug: the traceback, as Python would print it
            traceback.print_exc()
            code = 1
        _exit_if_threads_linger(code)
        return code

    return entry


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _exit_if_threads_linger(code: int) -> None:
    """End the process now if a non-daemon thread (a plugin's) would keep it alive.

    ``os._exit`` skips the interpreter's join of those threads, and with it
    atexit handlers and buffer flushing: the work is done and every file we
    wrote is closed by now, so only the standard streams are left to flush.
    """
    lingering = [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    if not lingering:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe must not change the exit code
            stream.flush()
    os._exit(code)


__all__ = ["CtrlC", "console_main", "is_ctrl_c", "sigint_handler"]
