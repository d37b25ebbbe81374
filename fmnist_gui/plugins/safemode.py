"""Crash-loop detection: notice that the last start died while loading plugins.

A plugin can end the process in ways no ``except`` clause sees (``os._exit()``,
a crash in a C extension, the out-of-memory killer). If it does so at every
start, the user has no way in. So, as Firefox and VS Code do, each process
leaves a marker file while it loads plugins (``loading()``), naming the plugin
it is busy with, and removes it when loading is over, however it ends. A marker
whose process is gone means that process died during loading:
``take_previous_crash()`` returns what it says, and the app offers safe mode
(``get_plugin_manager(safe_mode=True)``: built-ins only, then the plugin manager).

The markers live in ``plugin-loading/`` under the user data folder, one per
process (``<pid>.json``), so that two instances starting together never take each
other for a crash. Markers are best effort: a data folder that cannot be written
just means no detection.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fmnist_gui.system.paths import user_data_dir

MARKER_FOLDER = "plugin-loading"


def marker_folder() -> Path:
    """Where the per-process markers of plugin loading live."""
    return user_data_dir() / MARKER_FOLDER


@dataclass(frozen=True)
class CrashReport:
    """A previous start that died while loading plugins.

    ``plugin`` and ``location`` name the plugin it was busy with ("" when it
    died before the first one); ``started`` is when that start began (Unix time).
    """

    plugin: str
    location: str
    started: float

    @property
    def message(self) -> str:
        """One sentence for a dialog or the command line."""
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started))
        if self.plugin:
            return (
                f"The start at {when} ended while loading plugin {self.plugin!r} ({self.location})."
            )
        return f"The start at {when} ended while loading plugins."


class LoadingMarker:
    """This process's marker while it loads plugins; ``plugin()`` notes the one in progress."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / f"{os.getpid()}.json"
        self.started = time.time()
        self.written = False

    def plugin(self, name: str, location: str) -> None:
        """Record that plugin ``name`` (from ``location``) is being loaded now."""
        state = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": self.started,
            "plugin": name,
            "location": location,
        }
        part = self.path.with_name(f".{self.path.name}.part")
        try:
            # Renamed into place, so a process killed while writing never leaves half
            # a marker. Not fsynced (it is written once per plugin): a dead process
            # leaves its writes to the kernel, and a power cut is not a plugin's doing.
            part.write_text(json.dumps(state), encoding="utf-8")
            os.replace(part, self.path)
            self.written = True
        except OSError:
            pass  # best effort: without a marker there is only no detection

    def remove(self) -> None:
        if self.written:
            with contextlib.suppress(OSError):
                self.path.unlink()


@contextlib.contextmanager
def loading(folder: Path | None = None) -> Iterator[LoadingMarker]:
    """Keep this process's marker for the duration of the block.

    Left behind only if the process dies inside the block: an exception, even
    ``SystemExit``, removes it on the way out.
    """
    folder = Path(folder) if folder is not None else marker_folder()
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
    marker = LoadingMarker(folder)
    marker.plugin("", "")
    try:
        yield marker
    finally:
        marker.remove()


def take_previous_crash(folder: Path | None = None) -> CrashReport | None:
    """The latest start that died while loading plugins, or None; its markers are removed.

    Removing them means the question is asked once: if the same plugin kills
    the next start too, that start leaves a new marker.
    """
    folder = Path(folder) if folder is not None else marker_folder()
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError:
        return None
    crashes = []
    for path in paths:
        state = _read_marker(path)
        if state is not None and _is_running(state):
            continue  # another instance is loading its plugins right now
        with contextlib.suppress(OSError):
            path.unlink()
        if state is None:  # unreadable: its process died, before which plugin is unknown
            crashes.append(CrashReport("", "", _mtime(path)))
        else:
            crashes.append(
                CrashReport(str(state["plugin"]), str(state["location"]), float(state["started"]))
            )
    return max(crashes, key=lambda c: c.started, default=None)


def _read_marker(path: Path) -> dict | None:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    keys = ("pid", "host", "started", "plugin", "location")
    if not isinstance(state, dict) or not all(k in state for k in keys):
        return None
    return state


def _is_running(state: dict) -> bool:
    """Whether the marker's process is alive (it is then still loading, not dead)."""
    if state["host"] != socket.gethostname():
        return True  # a shared home folder: another machine's process, which we cannot see
    pid = state["pid"]
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    if os.name != "posix":
        # os.kill(pid, 0) would terminate the process on Windows; there, two
        # instances starting at the same moment may mistake each other for a crash.
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    return True


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


__all__ = ["CrashReport", "LoadingMarker", "loading", "marker_folder", "take_previous_crash"]
