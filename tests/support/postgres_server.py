"""A throwaway PostgreSQL server for tests: initdb in a temporary folder, a unix socket only.

The server refuses to run as root, so as root it runs as the ``postgres`` user
(``runuser``), which Debian's ``postgresql`` package creates. Nothing listens on
TCP (``listen_addresses=''``): clients connect through the socket in the folder.
``start()`` raises ``PostgresUnavailableError`` with the reason when no server can be started
here (no binaries, no ``postgres`` user, initdb refused), so tests can skip saying so.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class PostgresUnavailableError(Exception):
    """No PostgreSQL server can be started here; the message says why."""


def find_bindir() -> Path | None:
    """Debian's ``/usr/lib/postgresql/<version>/bin`` (newest first), else ``initdb`` on PATH."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").is_file():
            return Path(folder)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    # Only names the socket file (.s.PGSQL.<port>); nothing binds TCP.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """``start()``, then connect with ``url``; ``stop()`` removes everything."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.folder: Path | None = None
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@/postgres?host={self.folder}&port={self.port}"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)

    def start(self) -> PostgresServer:
        if self.bindir is None:
            raise PostgresUnavailableError(
                "no PostgreSQL server binaries (initdb) found; on Debian: apt-get install "
                "postgresql"
            )
        self.folder = Path(tempfile.mkdtemp(prefix="fmnist-pg-"))
        if self._as_postgres:
            if shutil.which("runuser") is None:
                raise PostgresUnavailableError(
                    "running as root, and runuser is missing to run as postgres"
                )
            try:
                import pwd

                user = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailableError(
                    "running as root and there is no 'postgres' user to run the server as"
                ) from None
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        data = self.folder / "data"
        result = self._run(
            "initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        if result.returncode != 0:
            raise PostgresUnavailableError(f"initdb failed: {result.stderr.strip()[-300:]}")
        options = (
            f"-k {self.folder} -p {self.port} -c listen_addresses='' -c fsync=off "
            "-c synchronous_commit=off -c max_connections=50"
        )
        result = self._run(
            "pg_ctl", "-D", str(data), "-o", options, "-l", str(self.folder / "log"), "-w", "start"
        )
        if result.returncode != 0:
            log = (self.folder / "log").read_text(errors="replace")[-300:]
            raise PostgresUnavailableError(f"the PostgreSQL server did not start: {log.strip()}")
        return self

    def stop(self) -> None:
        if self.folder is None:
            return
        if (self.folder / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None
