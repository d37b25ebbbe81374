"""Autosave and crash recovery: one checkpoint per running app session.

Each session autosaves to ``autosave_dir()/session-<pid>.pt`` (atomically, as
every save). A clean quit removes it, so a file whose process is gone means
that session crashed: ``find_recoverable_autosaves`` lists those for a
"Recover unsaved training?" offer.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist_gui.checkpoint.files import SUFFIX, save_checkpoint
from fmnist_gui.system.fileio import pid_alive
from fmnist_gui.system.paths import user_data_dir
from fmnist_gui.training.state import TrainingState

AUTOSAVE_PREFIX = "session-"


@dataclass(frozen=True)
class Recoverable:
    """An autosave left behind by a session that did not end cleanly."""

    path: Path
    saved_at: float  # the file's modification time, seconds since the epoch
    pid: int


def autosave_dir() -> Path:
    """``user_data_dir()/autosave``: one file per running app session."""
    return user_data_dir() / "autosave"


def autosave_path(pid: int | None = None) -> Path:
    return autosave_dir() / f"{AUTOSAVE_PREFIX}{os.getpid() if pid is None else pid}{SUFFIX}"


def autosave(state: TrainingState, *, extra: Mapping[str, Any] | None = None) -> Path:
    """Save ``state`` as this session's autosave (atomically); return its path."""
    path = autosave_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, state, extra=extra)
    return path


def discard_autosave(path: Path | None = None) -> None:
    """Remove an autosave (this session's by default): its training is saved or dropped."""
    with contextlib.suppress(FileNotFoundError):
        (path or autosave_path()).unlink()


def find_recoverable_autosaves() -> list[Recoverable]:
    """Autosaves of sessions that are no longer running, newest first.

    Also removes temp files that a killed save left behind in the folder.
    """
    folder = autosave_dir()
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    found: list[Recoverable] = []
    for entry in entries:
        pid = _session_pid(entry.name)
        if pid is None or pid == os.getpid() or pid_alive(pid):
            continue
        if entry.name.endswith(".part"):
            with contextlib.suppress(OSError):
                entry.unlink()
            continue
        try:
            found.append(Recoverable(entry, entry.stat().st_mtime, pid))
        except OSError:
            continue
    return sorted(found, key=lambda r: r.saved_at, reverse=True)


def _session_pid(name: str) -> int | None:
    # "session-123.pt" or its temp file ".session-123.pt.XXXX.part"
    found = re.fullmatch(rf"\.?{AUTOSAVE_PREFIX}(\d+)\{SUFFIX}(\..+\.part)?", name)
    return int(found.group(1)) if found else None


__all__ = [
    "AUTOSAVE_PREFIX",
    "Recoverable",
    "autosave",
    "autosave_dir",
    "autosave_path",
    "discard_autosave",
    "find_recoverable_autosaves",
]
