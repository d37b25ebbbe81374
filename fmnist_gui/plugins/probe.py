"""Trying third-party plugins in a throw-away process before the app imports them.

Some failures no ``except`` clause can catch: ``os._exit()``, a crash in a C
extension, an import or a self-test that never returns. A plugin doing one of
these would take the app down at every start. So a new or changed plugin is
first imported, asked for its specs and self-tested in a short-lived child
process (``python -m fmnist_gui.plugins.probe``); it is imported into the app only
if that process came through. What the plugin raises there does not matter:
in-process loading catches and reports exceptions itself.

Verdicts are cached in ``plugin-probes.json`` under the user data folder, keyed by
a file's SHA-256 or a distribution's name and version, so an unchanged plugin is
tried once. All the plugins to try go to one child process. It reports on a
progress file as it starts and finishes each; if it dies or stops reporting,
the plugin it was busy with is blamed and the rest are tried in a new child.
Built-ins ship with the app and are never tried.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fmnist_gui.system.fileio import write_atomically
from fmnist_gui.system.paths import user_data_dir

CACHE_FILE = "plugin-probes.json"
CACHE_FORMAT = 1
#: Verdicts kept in the cache; the oldest go first.
CACHE_LIMIT = 500
#: Seconds one plugin may take to import and self-test in the child.
PLUGIN_SECONDS = 30.0
#: Seconds the child may take to start (Python, torch) before its first plugin.
STARTUP_SECONDS = 120.0
_POLL_SECONDS = 0.05
# Trial processes running now, and their folders, so that a process leaving in a
# hurry (without the loader thread's clean-up) can end them and remove the folders.
_RUNNING: set[subprocess.Popen] = set()
_FOLDERS: set[Path] = set()


def kill_trials() -> None:
    """Kill the trial processes still running and remove their temporary folders.

    For an app quitting while it loads plugins: it leaves at once, so the
    loader thread's own clean-up never runs.
    """
    for child in list(_RUNNING):
        with contextlib.suppress(OSError):
            child.kill()
    for child in list(_RUNNING):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            child.wait(timeout=2)  # its output file is closed before the folder goes
    for folder in list(_FOLDERS):
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class ProbeTarget:
    """One plugin to try: a file (its exact bytes) or an installed distribution."""

    key: str
    label: str
    path: str = ""
    data: bytes = b""
    distribution: str = ""

    @classmethod
    def for_file(cls, path: Path, data: bytes, sha256: str) -> ProbeTarget:
        """A plugin file; ``data`` are the bytes that were hashed and will run."""
        return cls(key=f"file:{sha256}", label=str(path), path=str(path), data=data)

    @classmethod
    def for_distribution(cls, name: str, version: str) -> ProbeTarget:
        """Every ``fmnist_gui`` entry point of installed distribution ``name``."""
        return cls(key=f"dist:{name}=={version}", label=name, distribution=name)


@dataclass(frozen=True)
class Verdict:
    """Whether the trial process came through; if not, ``reason`` says how it ended."""

    ok: bool
    reason: str = ""


def cache_path() -> Path:
    """The verdict cache of the current user."""
    return user_data_dir() / CACHE_FILE


class Prober:
    """Decides which plugins may be imported in-process, trying each one once.

    ``timeout`` bounds one plugin's import and self-test in the child, in seconds.
    """

    def __init__(self, cache: Path | None = None, *, timeout: float = PLUGIN_SECONDS) -> None:
        self.cache = Path(cache) if cache is not None else cache_path()
        self.timeout = timeout

    def verdicts(self, targets: Iterable[ProbeTarget]) -> tuple[dict[str, Verdict], str]:
        """Verdicts by key for ``targets``, from the cache or from trial processes.

        The second value is a problem with the trial process itself (Python
        cannot start it, say), or "". Targets it left undecided are missing from
        the verdicts and are not cached: the caller loads them as before.
        """
        wanted = {t.key: t for t in targets}
        cached = self._read_cache()
        found = {k: cached[k] for k in wanted if k in cached}
        pending = [t for k, t in wanted.items() if k not in found]
        new: dict[str, Verdict] = {}
        problem = ""
        while pending and not problem:
            decided, problem = _trial(pending, self.timeout)
            new.update(decided)
            pending = [t for t in pending if t.key not in decided]
        if new:
            self._write_cache(cached, new)
        return {**found, **new}, problem

    def _read_cache(self) -> dict[str, Verdict]:
        try:
            data = json.loads(self.cache.read_text(encoding="utf-8"))
            entries = data["verdicts"] if data.get("format") == CACHE_FORMAT else {}
            return {k: Verdict(bool(v["ok"]), str(v["reason"])) for k, v in entries.items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return {}  # missing or damaged: the plugins are simply tried again

    def _write_cache(self, cached: dict[str, Verdict], new: dict[str, Verdict]) -> None:
        merged = {k: v for k, v in cached.items() if k not in new} | new
        keep = list(merged.items())[-CACHE_LIMIT:]  # insertion order: oldest first
        data = json.dumps(
            {
                "format": CACHE_FORMAT,
                "verdicts": {k: {"ok": v.ok, "reason": v.reason} for k, v in keep},
            },
            indent=1,
        ).encode()
        with contextlib.suppress(OSError):  # no cache: the same plugins are tried next time
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.cache, lambda out: out.write(data))


def _trial(targets: list[ProbeTarget], timeout: float) -> tuple[dict[str, Verdict], str]:
    """Try ``targets`` in one child process: the verdicts it reached, and a problem or ""."""
    with tempfile.TemporaryDirectory(prefix="fmnist-probe-", ignore_cleanup_errors=True) as tmp:
        folder = Path(tmp)
        _FOLDERS.add(folder)
        try:
            return _trial_in(folder, targets, timeout)
        finally:
            _FOLDERS.discard(folder)


def _trial_in(
    folder: Path, targets: list[ProbeTarget], timeout: float
) -> tuple[dict[str, Verdict], str]:
    """``_trial`` in ``folder``: the request, progress and output files of one child."""
    request, progress, output = (folder / n for n in ("request", "progress", "output"))
    request.write_text(
        json.dumps(
            [
                {
                    "key": t.key,
                    "path": t.path,
                    "data": base64.b64encode(t.data).decode(),
                    "distribution": t.distribution,
                }
                for t in targets
            ]
        ),
        encoding="utf-8",
    )
    progress.touch()
    env = dict(os.environ)
    # The child must import what this process imports, including paths added at run time.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    command = [sys.executable, "-m", __name__, str(request), str(progress), str(os.getpid())]
    with open(output, "wb") as out:
        try:
            child = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env
            )
        except OSError as exc:
            return {}, f"could not start {sys.executable}: {exc.strerror or exc}"
        _RUNNING.add(child)
        try:
            code, timed_out, events = _watch(child, progress, timeout)
        finally:
            _RUNNING.discard(child)
            if child.poll() is None:  # interrupted while waiting: leave no child behind
                child.kill()
                child.wait()
    started = [e["start"] for e in events if "start" in e]
    done = {e["done"] for e in events if "done" in e}
    verdicts = {key: Verdict(True) for key in done}
    busy = [key for key in started if key not in done]
    if busy:
        verdicts[busy[0]] = Verdict(False, _how_it_ended(code, timed_out, timeout, output))
        return verdicts, ""
    if len(done) == len(targets) and any("end" in e for e in events):
        return verdicts, ""
    when = "between two plugins" if started else "before trying any"
    how = _how_it_ended(code, timed_out, STARTUP_SECONDS, output)
    return verdicts, f"the process trying plugins {how} {when}"


def _watch(child: subprocess.Popen, progress: Path, timeout: float) -> tuple[int, bool, list]:
    """Wait for ``child``; kill it when one plugin takes longer than ``timeout``."""
    deadline = time.monotonic() + STARTUP_SECONDS
    seen = 0
    while True:
        try:
            code = child.wait(timeout=_POLL_SECONDS)
            return code, False, _events(progress)
        except subprocess.TimeoutExpired:
            pass
        events = _events(progress)
        if len(events) != seen:
            seen = len(events)
            busy = "start" in events[-1]
            deadline = time.monotonic() + (timeout if busy else STARTUP_SECONDS)
        if time.monotonic() > deadline:
            child.kill()
            code = child.wait()
            return code, True, _events(progress)


def _events(progress: Path) -> list[dict]:
    try:
        lines = progress.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            break  # a line still being written
    return events


def _how_it_ended(code: int, timed_out: bool, timeout: float, output: Path) -> str:
    if timed_out:
        how = f"did not finish within {timeout:g} s and was stopped"
    elif code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        how = f"was killed by {name}"
    else:
        how = f"ended with exit code {code}"
    last = _last_line(output)
    return f"{how} (last output: {last})" if last else how


def _last_line(output: Path) -> str:
    try:
        with open(output, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


# ----- the child process ----------------------------------------------------------
def _die_with(parent: int) -> None:
    """End this process when ``parent`` ends, however it ends (even by SIGKILL).

    Without this a plugin that hangs in its trial would outlive an app killed
    meanwhile, spinning a CPU for nobody. Linux only (prctl); elsewhere the
    parent's own timeout and ``kill_trials`` are what stop it.
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _child(request: Path, progress: Path) -> None:
    """Import and self-test each requested plugin, reporting start and end of each."""
    fd = os.open(progress, os.O_WRONLY | os.O_APPEND)

    def emit(event: dict) -> None:
        os.write(fd, (json.dumps(event) + "\n").encode())

    from fmnist_gui.plugins import selftest
    from fmnist_gui.plugins.host import PluginHost
    from fmnist_gui.plugins.selftest import SelfTestCache

    selftest.warm_up()  # torch's one-off costs, before the clock of the first plugin starts
    emit({"ready": True})
    for target in json.loads(request.read_text(encoding="utf-8")):
        emit({"start": target["key"]})
        host = PluginHost(selftest=True, selftest_cache=SelfTestCache())
        if target["distribution"]:
            host.load_entry_points(distributions={target["distribution"]})
        else:
            host.load_file(Path(target["path"]), data=base64.b64decode(target["data"]))
        emit({"done": target["key"]})
    emit({"end": True})


if __name__ == "__main__":
    _die_with(int(sys.argv[3]))
    _child(Path(sys.argv[1]), Path(sys.argv[2]))
    # Without waiting for threads a plugin may have started: its trial is over.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
