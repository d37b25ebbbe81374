"""Fixtures for the zoo's tests: a plugin host with the zoo, and the real data when present."""

from __future__ import annotations

import os
from pathlib import Path

import fmnist_builtins.losses
import fmnist_builtins.schedulers
import fmnist_optimizer_zoo
import pytest

from fmnist_gui.plugins.host import PluginHost


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "realdata: needs the real Fashion-MNIST files (skipped when absent)"
    )


@pytest.fixture(scope="session")
def zoo_host() -> PluginHost:
    """A fresh host with the zoo, the built-in losses and schedules, each spec self-tested once."""
    host = PluginHost()
    host.load_plugin(fmnist_builtins.losses, "builtin_losses")
    host.load_plugin(fmnist_builtins.schedulers, "builtin_schedulers")
    host.load_plugin(fmnist_optimizer_zoo, "optimizer_zoo")
    return host


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    """The real Fashion-MNIST where the app keeps it (or $FMNIST_REAL_DATA); else skip."""
    from fmnist_gui.system.paths import default_data_root
    from fmnist_gui.training.data import DataError, ensure_dataset

    root = Path(os.environ.get("FMNIST_REAL_DATA") or default_data_root())
    try:
        ensure_dataset(root, allow_download=False)
    except DataError as exc:
        pytest.skip(f"real Fashion-MNIST not available: {exc}")
    return root
