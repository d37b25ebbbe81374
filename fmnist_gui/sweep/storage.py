"""Where sweeps live: Optuna's RDB storage, SQLite by default, PostgreSQL to scale out.

The default is one SQLite file under the user data folder, so a sweep survives
quitting and any later run continues it. Several machines share a sweep through
a server database (``postgresql://user:password@host/db``), which every worker
reaches with the same URL.

Liveness is Optuna's heartbeat: each running trial stamps the storage every
``heartbeat`` seconds; a trial whose stamp is older than ``grace`` seconds is
marked failed by whichever worker looks next, and Optuna's
``RetryHeartbeatStaleTrialCallback`` queues it again with the same parameters.
"""

from __future__ import annotations

import importlib.util
import sqlite3
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from fmnist_gui.errors import FmnistError
from fmnist_gui.system.paths import user_data_dir

DEFAULT_HEARTBEAT = 10  # seconds between a running trial's stamps
DEFAULT_GRACE = 30  # seconds without a stamp before a trial counts as dead
MAX_RETRIES = 3  # a trial that kills its worker this often is given up
SQLITE_TIMEOUT = 60  # seconds a writer waits for another process's lock


class StorageError(FmnistError, RuntimeError):
    """The storage URL is malformed or its database cannot be reached."""


def default_storage_url() -> str:
    """``sqlite:///`` + the sweeps file in the user data folder."""
    return f"sqlite:///{user_data_dir() / 'sweeps.db'}"


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` (and ``postgres://``) with psycopg 3, which SQLAlchemy does not.

    SQLAlchemy maps a bare ``postgresql://`` to the older psycopg2 driver; when only
    psycopg 3 is installed (our ``postgres`` extra) the URL names it explicitly.
    """
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        if importlib.util.find_spec("psycopg2") is None:
            return f"postgresql+psycopg://{rest}"
        return f"postgresql://{rest}"
    return url


def describe_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        return url


def sqlite_path(url: str) -> Path | None:
    """The file behind a ``sqlite:///`` URL, or None (memory, or not SQLite)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("sqlite"):
        return None
    path = rest.removeprefix("/").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def open_storage(
    url: str | None = None,
    *,
    heartbeat: int = DEFAULT_HEARTBEAT,
    grace: int = DEFAULT_GRACE,
    create_folder: bool = False,
) -> RDBStorage:
    """An Optuna ``RDBStorage`` with heartbeats and retries of dead workers' trials.

    ``create_folder`` makes the SQLite file's folder (for the default location).
    Raises ``StorageError`` with one readable line when the URL is bad or the
    database cannot be reached.
    """
    url = normalize_url(url or default_storage_url())
    shown = describe_url(url)
    if not 0 < heartbeat < grace:
        raise StorageError(
            f"the heartbeat ({heartbeat} s) must be above 0 and below the grace period ({grace} s)"
        )
    engine_kwargs: dict = {}
    path = sqlite_path(url)
    if path is not None:
        if create_folder:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.parent.is_dir():
            raise StorageError(f"{shown}: the folder {path.parent} does not exist")
        _use_wal(path, shown)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT}}
    elif url.startswith("postgresql"):
        engine_kwargs = {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():
            # heartbeat_interval is marked experimental; we rely on it knowingly.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat,
                grace_period=grace,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                    max_retry=MAX_RETRIES
                ),
            )
        if path is not None:
            _serialize_sqlite_transactions(storage.engine)
        return storage
    except ModuleNotFoundError as exc:
        raise StorageError(
            f"{shown} needs the Python module {exc.name!r}; for PostgreSQL install "
            "fmnist-gui[postgres] (psycopg 3)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy's many connection errors
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        raise StorageError(f"cannot open the sweep storage {shown}: {reason}") from None


def _serialize_sqlite_transactions(engine) -> None:
    """Make each SQLite transaction take the write lock when it begins.

    Optuna hands a queued trial to one worker by reading that it is ``WAITING``
    and setting it ``RUNNING`` in one transaction, with ``SELECT ... FOR UPDATE``,
    which SQLite ignores. Worse, Python's sqlite3 driver sends ``BEGIN`` only
    before the first write, so the read is not in the transaction at all: two
    processes could both read ``WAITING`` and both run the trial (seen in our
    two-worker test). ``BEGIN IMMEDIATE`` on every transaction (SQLAlchemy's
    documented recipe for pysqlite) makes that read-then-write atomic. The
    transactions are milliseconds long, so workers barely wait for each other.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, connection_record):
        dbapi_connection.isolation_level = None  # the "begin" hook below begins instead

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the hooks existed are not reused


def _use_wal(path: Path, shown: str) -> None:
    """Put the SQLite file in WAL mode: readers then never wait for the one writer.

    The mode is stored in the file, so once is enough; on a folder where WAL
    cannot work (some network file systems) SQLite keeps its rollback journal.
    """
    try:
        connection = sqlite3.connect(path, timeout=SQLITE_TIMEOUT)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open the sweep storage {shown}: {exc}") from None


__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_HEARTBEAT",
    "StorageError",
    "default_storage_url",
    "describe_url",
    "normalize_url",
    "open_storage",
]
