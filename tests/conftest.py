"""Shared fixtures. Qt runs offscreen; no test downloads anything."""

from __future__ import annotations

import gzip
import os
import struct
import sys
import threading
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# One intra-op thread per process: tests start many small torch processes, and
# OpenMP threads spinning against each other on a 2-core machine cost far more
# than the parallelism gains on tiny tensors. Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]


def _real_data_root() -> Path:
    # Read before any fixture moves FMNIST_GUI_HOME: `make test` prepares the
    # real data in the user's own data folder, where the app looks for it.
    from fmnist_gui.system.paths import default_data_root

    return Path(os.environ.get("FMNIST_REAL_DATA") or default_data_root())


REAL_DATA_ROOT = _real_data_root()


def write_idx(path: Path, array, *, gz: bool = False) -> None:
    """Write a uint8 array in IDX format (images: 3 dims, labels: 1 dim)."""
    import numpy as np

    array = np.asarray(array, dtype=np.uint8)
    magic = 0x800 | array.ndim
    payload = struct.pack(f">{array.ndim + 1}I", magic, *array.shape) + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def make_tiny_fashion_mnist(
    root: Path, n_train: int = 256, n_test: int = 128, seed: int = 0, *, gz: bool = False
) -> Path:
    """Tiny but learnable data in torchvision's ``FashionMNIST/raw`` layout.

    Each class is a noisy bright bar in its own position, so a few steps of
    SGD visibly lower the loss.
    """
    import numpy as np

    rng = np.random.default_rng(seed)

    def make(n):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 255
        return images, labels

    raw = root / "FashionMNIST" / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = make(n)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, gz=gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, gz=gz)
    return root


@pytest.fixture
def tiny_root(tmp_path) -> Path:
    return make_tiny_fashion_mnist(tmp_path / "data")


@pytest.fixture
def tiny_data(tiny_root):
    from fmnist_gui.training.data import load_dataset

    return load_dataset(tiny_root, allow_download=False)


@pytest.fixture
def plugins(tmp_path):
    """A fresh plugin host with the built-ins and an empty user plugin folder."""
    from fmnist_gui.plugins.host import get_plugin_manager

    return get_plugin_manager([tmp_path / "no-plugins"])


_collector_timer: list = []  # the Qt timer of _collect_in_main_thread, once a QApplication exists


@pytest.fixture(autouse=True, scope="session")
def _collect_in_main_thread():
    """Cyclic garbage is collected by the main thread only, as in the app.

    A collection that a worker thread happens to run can destroy old windows'
    Qt objects there and deadlock with the GUI thread (it did, twice, in this
    suite; see ``fmnist_gui/system/collector.py``). So the automatic collector
    is off for the session; the main thread collects what is due after each
    test, and every 250 ms while a test waits in Qt's event loop.
    """
    from fmnist_gui.system import collector

    collector.stop_automatic()
    yield
    for timer in _collector_timer:
        timer.stop()
    collector.restore_automatic()


@pytest.fixture(autouse=True)
def _collect_due_garbage(_collect_in_main_thread):
    yield
    from fmnist_gui.system.collector import collect_due

    collect_due()
    if not _collector_timer and "PySide6.QtWidgets" in sys.modules:
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication

        if QApplication.instance() is not None:
            timer = QTimer()
            timer.timeout.connect(collect_due)
            timer.start(250)
            _collector_timer.append(timer)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Keep every test away from the real user folders and settings."""
    monkeypatch.setenv("FMNIST_GUI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture(autouse=True)
def _no_unpatched_dialogs(monkeypatch):
    """A modal dialog nobody answers would hang the suite: make it fail the test instead.

    Tests patch the dialog functions they expect (pytest-qt's advice); their
    monkeypatch comes later and wins over this one.
    """
    if "PySide6.QtWidgets" not in sys.modules:
        yield
        return
    from PySide6.QtWidgets import QMessageBox

    def refuse(*args, **kwargs):
        text = " / ".join(str(a) for a in args[1:3])
        raise AssertionError(f"an unpatched modal dialog was shown: {text}")

    for name in ("warning", "critical", "information", "question"):
        monkeypatch.setattr(QMessageBox, name, staticmethod(refuse))
    yield


@pytest.fixture(autouse=True)
def _no_leaked_threads():
    """Fail any test that leaves a Python thread or a QThread running (as napari does)."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for t in leaked:
        t.join(timeout=2)
    leaked = [t for t in leaked if t.is_alive()]
    assert not leaked, f"test left threads running: {leaked}"
    if "PySide6.QtCore" in sys.modules:
        from PySide6.QtCore import QThread

        from fmnist_gui.qt.infra import threads

        running = [t for t in threads.live_threads() if isinstance(t, QThread) and t.isRunning()]
        assert not running, f"test left QThreads running: {running}"


@pytest.fixture
def settings(tmp_path):
    """QSettings in a file of the test's own, never the user's."""
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def app(qtbot, tiny_root, plugins, settings):
    """The real app (window and features) on tiny data, set for long runs that a test can stop."""
    from tests.support.qt_helpers import close_window, open_window

    app = open_window(qtbot, tiny_root, plugins, settings)
    # Small batches: many steps per epoch, so a run lasts long enough to stop it.
    panel = app.training.panel
    panel.batch_spin.setValue(4)
    panel.epochs_spin.setValue(200)
    panel.seed_edit.setText("1")
    yield app
    close_window(qtbot, app)


def run_stopping_after(trainer, batches: int):
    """Run, asking to stop once ``batches`` batches are done; return the ``RunEnd``."""
    from fmnist_gui.training.driver import RunDriver
    from fmnist_gui.training.events import BatchEnd, RunEnd

    driver = RunDriver(trainer)
    seen = 0
    for event in driver.run():
        if isinstance(event, BatchEnd):
            seen += 1
            if seen == batches:
                driver.request_stop()
        if isinstance(event, RunEnd):
            return event
    raise AssertionError("run() ended without RunEnd")


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    """The real Fashion-MNIST, when present (CI installs it); otherwise skip."""
    from fmnist_gui.training.data import DataError, ensure_dataset

    try:
        ensure_dataset(REAL_DATA_ROOT, allow_download=False)
    except DataError as exc:
        pytest.skip(f"real Fashion-MNIST not available: {exc}")
    return REAL_DATA_ROOT
