"""The boundary where plugin code runs: its failures are blamed on the plugin by name.

"Failures" means every ``BaseException``, not only ``Exception``: a plugin that
calls ``sys.exit()``, raises ``KeyboardInterrupt`` itself or misuses
``GeneratorExit`` must not stop the app, leave a run "stopping" forever or take
the command line down without a word. The one exception let through is a real
Ctrl-C, recognised by ``fmnist_gui.system.console.is_ctrl_c``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from fmnist_gui.errors import FmnistError
from fmnist_gui.system.console import is_ctrl_c


class PluginFailure(FmnistError, RuntimeError):  # noqa: N818 - established public name
    """Code from a plugin raised or misbehaved; ``plugin`` names it."""

    def __init__(self, plugin: str, message: str) -> None:
        super().__init__(message)
        self.plugin = plugin


def from_plugin(exc: BaseException) -> bool:
    """Whether ``exc``, raised while plugin code ran, is that plugin's failure.

    Everything is, except the user's own Ctrl-C: callers re-raise that one.
    """
    return not is_ctrl_c(exc)


def describe(exc: BaseException) -> str:
    """``Type: message`` for one line; says what exiting or interrupting means here."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, SystemExit):
        return f"{text} (it called sys.exit(); a plugin must raise an exception instead)"
    if isinstance(exc, KeyboardInterrupt):
        return f"{text} (raised by the plugin itself, not by Ctrl-C)"
    return text


@contextlib.contextmanager
def blame(spec: Any, kind: str, during: str) -> Iterator[None]:
    """Turn whatever plugin code raises into a ``PluginFailure`` naming the plugin.

    ``spec`` is the ``OptimizerSpec`` or ``LossSpec`` whose code runs inside the
    block. A real Ctrl-C passes through unchanged.
    """
    try:
        yield
    except PluginFailure:
        raise
    except BaseException as exc:
        if not from_plugin(exc):
            raise
        raise PluginFailure(
            spec.plugin,
            f"{kind} {spec.name!r} (plugin {spec.plugin!r}) raised during {during}: "
            f"{describe(exc)}",
        ) from exc


__all__ = ["PluginFailure", "blame", "describe", "from_plugin"]
