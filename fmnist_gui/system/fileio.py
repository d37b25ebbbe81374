"""Writing files so that a crash leaves the old file or the new one, never a torn one."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(target: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file)`` on a temp file beside ``target``, fsync, then rename it over.

    The temp file lives in the same folder so ``os.replace`` is atomic. On any
    error the temp file is removed and ``target`` is untouched. Its name,
    ``.<target name>.<pid>.<random>.part``, carries the writer's pid, so the
    next write to the folder removes what a killed write left behind.
    """
    target = Path(target)
    mode = _mode_for(target)
    remove_stale_temp_files(target.parent)
    fd, tmp = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".part"
    )
    try:
        with os.fdopen(fd, "wb") as out:
            if hasattr(os, "fchmod"):  # mkstemp makes 0600; give the file its usual mode
                os.fchmod(out.fileno(), mode)
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(target.parent)


# A temp file of a write still going on is never this old: a save takes seconds.
STALE_TEMP_SECONDS = 15 * 60

# ".<name>.<pid>.<8 random chars from mkstemp>.part"; before the pid was added: no pid.
_TEMP_NAME = re.compile(r"\.(?P<name>.+?)(?:\.(?P<pid>\d+))?\.[a-z0-9_]{8}\.part")


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Remove the temp files that killed writes of ``write_atomically`` left in ``folder``.

    Only files named as ours are touched, and only when their writer is gone:
    its pid is not running, or the file is older than ``STALE_TEMP_SECONDS``
    (the pid may have been reused, or the name has none). Returns what was removed.
    """
    removed: list[Path] = []
    now = time.time()
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            found = _TEMP_NAME.fullmatch(entry.name)
            if found is None or not entry.is_file(follow_symlinks=False):
                continue
            pid = found.group("pid")
            try:
                old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMP_SECONDS
            except OSError:
                continue
            writer_gone = (
                os.name == "posix"  # elsewhere pid_alive cannot tell: only the age counts
                and pid is not None
                and int(pid) != os.getpid()
                and not pid_alive(int(pid))
            )
            if old or writer_gone:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is running (``False`` where that cannot be told cheaply)."""
    if os.name != "posix":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # running, as another user
    except OSError:
        return False
    return True


def why_not_writable(path: Path, *, in_place: bool = False) -> str | None:
    """Why a file cannot be written at ``path`` (one phrase), or ``None`` when it can.

    Checked by trying: a temp file of ``write_atomically``'s naming is made in
    the folder and removed, so permissions, read-only disks and ACLs all count
    as they will when the real write comes. An existing file that is not a
    regular one (``/dev/null``, a pipe) is only checked for write permission,
    and so is an existing file that will be written ``in_place`` (not replaced
    by ``write_atomically``, which needs the folder).
    """
    path = Path(path)
    if path.is_dir():
        return "is a folder; give a file name"
    folder = path.parent
    if not folder.is_dir():
        return f"the folder {folder} does not exist"
    if path.exists() and (in_place or not path.is_file()):
        return None if os.access(path, os.W_OK) else "no permission to write it"
    try:
        fd, probe = tempfile.mkstemp(
            dir=folder, prefix=f".{path.name}.{os.getpid()}.", suffix=".part"
        )
    except OSError as exc:
        return f"cannot write in {folder}: {exc.strerror or exc}"
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return None


def _mode_for(target: Path) -> int:
    """The existing file's permissions, or what a plain open() would give (0666 - umask)."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    # Linux reports it without changing it; os.umask() would set it briefly,
    # racing any other thread that creates a file meanwhile.
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on Windows.
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
