"""Fixtures for sweeps: storages (SQLite files, a real PostgreSQL server) and small sweeps."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import make_tiny_fashion_mnist

CLI = [sys.executable, "-m", "fmnist_gui.sweep.cli"]


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'sweeps.db'}"


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL server of the test session's own; skipped, saying why, where none can run."""
    pytest.importorskip("psycopg", reason="psycopg 3 is not installed (pip install '.[postgres]')")
    from tests.support.postgres_server import PostgresServer, PostgresUnavailableError

    server = PostgresServer()
    try:
        server.start()
    except PostgresUnavailableError as exc:
        server.stop()
        pytest.skip(f"no PostgreSQL server can be started here: {exc}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def longer_root(tmp_path):
    """Tiny data with enough training images that a trial lasts about a second."""
    return make_tiny_fashion_mnist(tmp_path / "longer", n_train=1536, n_test=128)


def open_test_storage(url: str, heartbeat: int = 1, grace: int = 3):
    from fmnist_gui.sweep.storage import open_storage

    return open_storage(url, heartbeat=heartbeat, grace=grace)


def new_sweep(url, data, plugins, name="t", optimizers=("sgd",), *, tune=(), **settings):
    """Make a sweep through the engine's API (what `fmnist-sweep run` does before working)."""
    from fmnist_gui.sweep.study import Sweep
    from fmnist_gui.sweep.worker import make_spec

    settings = {"trials": 4, "epochs": 1, "seeds": 0, "batch_size": 16, **settings}
    spec = make_spec(plugins, data, optimizers, tune=tune, **settings)
    sweep, created = Sweep.create(open_test_storage(url), name, spec)
    assert created
    return sweep


def run_worker(sweep, data, plugins, worker_id="0", **kwargs):
    """Run a worker in this process; return (status, events)."""
    from fmnist_gui.sweep.worker import SweepWorker

    events = []
    worker = SweepWorker(
        sweep,
        data,
        plugins,
        worker_id=worker_id,
        on_event=events.append,
        poll_seconds=0.1,
        **kwargs,
    )
    return worker.run(), events


def sweep_cli(*args, timeout=120, **popen):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, **popen
    )


def start_sweep_cli(*args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [*CLI, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
