"""The boundary where plugin code runs: its failures are blamed on the plugin by name."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from fmnist_gui.errors import FmnistError


class PluginFailure(FmnistError, RuntimeError):
    """Code from a plugin raised or misbehaved; ``plugin`` names it."""

    def __init__(self, plugin: str, message: str) -> None:
        super().__init__(message)
        self.plugin = plugin


@contextlib.contextmanager
def blame(spec: Any, kind: str, during: str) -> Iterator[None]:
    """Turn an exception from plugin code into a ``PluginFailure`` naming the plugin.

    ``spec`` is the ``OptimizerSpec`` or ``LossSpec`` whose code runs inside the block.
    """
    try:
        yield
    except PluginFailure:
        raise
    except Exception as exc:
        raise PluginFailure(
            spec.plugin,
            f"{kind} {spec.name!r} (plugin {spec.plugin!r}) raised during "
            f"{during}: {type(exc).__name__}: {exc}",
        ) from exc


__all__ = ["PluginFailure", "blame"]
