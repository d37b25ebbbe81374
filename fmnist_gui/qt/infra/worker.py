"""Background work for the window: training, start-up loading, downloading.

Each job is a ``QObject`` moved to a ``QThread`` (as superqt's workers are):
``run()`` emits ``started``, then ``finished`` or ``errored``, and catches every
``BaseException`` into ``errored`` so nothing ever escapes into Qt's event loop:
plugin code runs in these threads, and a plugin's ``sys.exit()`` or its own
``KeyboardInterrupt`` must end the job with a message, not the thread silently
(a real Ctrl-C is delivered to the main thread only, never here).

``TrainingWorker`` emits ``batch_loss(step, loss)`` for every batch: the
GUI thread only appends it to the plot's buffer, and draws on its paced frame
timer (``pacing.py``), not per signal.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from PySide6.QtCore import QObject, Qt, QThread, Signal, SignalInstance, Slot

from fmnist_gui.plugins.boundary import describe
from fmnist_gui.qt.infra import threads
from fmnist_gui.system.openmp import release_thread_pool

if TYPE_CHECKING:
    from fmnist_gui.training.trainer import Trainer


class TrainingWorker(QObject):
    """Drives one run of a ``Trainer`` in a worker thread, through ``self.driver``.

    The trainer belongs to the window: the worker only borrows it for one run.
    Stop, pause, resume and snapshots go to ``driver`` (a ``RunDriver``), from
    any thread; a stop asked before the thread starts is honoured.
    """

    started = Signal()
    batch_loss = Signal(int, float)  # (step, loss) of every BatchEnd
    epoch = Signal(object)  # EpochEnd
    log = Signal(str)  # one of the tutorial's lines, formatted as the CLI prints it
    finished = Signal(object)  # RunEnd
    errored = Signal(str, str)  # message, traceback

    def __init__(self, trainer: Trainer) -> None:
        super().__init__()
        from fmnist_gui.training.driver import RunDriver  # torch is loaded by now

        self.driver = RunDriver(trainer)
        self._ran = False

    @Slot()
    def run(self) -> None:
        from fmnist_gui.training.events import BatchEnd, EpochEnd, RunEnd
        from fmnist_gui.training.tutorial_log import format_event

        self.started.emit()
        end = RunEnd("failed", "the run ended without a result")
        try:
            if self._ran:
                raise RuntimeError("a TrainingWorker runs only once")
            self._ran = True
            batch_loss = self.batch_loss
            for event in self.driver.run():
                if type(event) is BatchEnd:
                    # The hot path: keep it to a few attribute operations.
                    batch_loss.emit(event.step, event.loss)
                    if event.batch % 100 == 0:
                        self.log.emit(format_event(event))
                    continue
                line = format_event(event)
                if line is not None:
                    self.log.emit(line)
                if isinstance(event, EpochEnd):
                    self.epoch.emit(event)
                elif isinstance(event, RunEnd):
                    end = event
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a dialog
            self.errored.emit(describe(exc), traceback.format_exc())
            end = RunEnd("failed", str(exc) or type(exc).__name__)
        self.finished.emit(end)


class FunctionWorker(QObject):
    """Runs ``fn(*args)`` once in a worker thread: ``returned(result)`` or ``errored``."""

    started = Signal()
    returned = Signal(object)
    errored = Signal(str, str)
    finished = Signal()

    def __init__(self, fn, *args: Any) -> None:
        super().__init__()
        self.fn, self.args = fn, args

    @Slot()
    def run(self) -> None:
        self.started.emit()
        try:
            result = self.fn(*self.args)
        except BaseException as exc:  # noqa: BLE001 - see the module docstring
            self.errored.emit(describe(exc), traceback.format_exc())
        else:
            self.returned.emit(result)
        finally:
            self.fn, self.args = None, ()  # let go of what the call held
            self.finished.emit()


class _Runnable(Protocol):
    """What ``Job`` needs of a worker: a ``run`` slot and a ``finished`` signal."""

    finished: SignalInstance

    def run(self) -> None: ...


class Job(QObject):
    """One worker in its own tracked ``QThread``, from start to clean-up.

    ``done`` is emitted in the GUI thread once the thread has really ended,
    after which the job holds nothing: that is the moment a new job may start.
    Nothing is ever ``terminate()``d; ``wait()`` is for closing the app.
    """

    done = Signal()

    def __init__(self, worker: QObject, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker: QObject | None = worker
        self.qthread: QThread | None = threads.track(QThread())
        self.qthread.setObjectName(type(worker).__name__)
        worker.moveToThread(self.qthread)
        runnable = cast(_Runnable, worker)
        self.qthread.started.connect(runnable.run)
        # Direct: QThread.quit is thread-safe, and a queued quit would never be
        # delivered while the GUI thread blocks in wait() during close.
        runnable.finished.connect(self.qthread.quit, Qt.ConnectionType.DirectConnection)
        self.qthread.finished.connect(self._on_thread_finished)

    def start(self) -> Job:
        assert self.qthread is not None
        # The GUI thread's idle OpenMP pool would slow every parallel region of
        # the worker by ~13% on a small machine: see fmnist_gui/openmp.py.
        release_thread_pool()
        self.qthread.start()
        return self

    def wait(self, msecs: int) -> bool:
        """Block until the thread ends (at most ``msecs``); True when it did."""
        if self.qthread is None:
            return True
        finished = self.qthread.wait(msecs)
        if finished:
            self._on_thread_finished()
        return finished

    @Slot()
    def _on_thread_finished(self) -> None:
        if self.qthread is None:
            return
        # ``finished`` is emitted just before the thread exits: join it before the
        # last reference goes, or Qt warns "Destroyed while thread is still running".
        self.qthread.wait()
        self.worker = None
        self.qthread = None
        self.done.emit()


class LoadCancelledError(Exception):
    """The window closed while loading: ``load_backend`` stopped between two phases."""


def load_backend(
    data_dir: Path,
    plugin_dirs: list[Path] | None,
    plugins: Any,
    *,
    safe_mode: bool = False,
    cancelled: threading.Event | None = None,
    progress: Callable[[str], object] | None = None,
) -> dict:
    """The slow start-up work, run off the GUI thread: torch, plugins, dataset.

    Returns ``{"plugins": host, "data": FashionMNISTData | None, "data_error": str,
    "phases": {name: seconds}}``; a missing dataset is not an exception here
    because the window offers fixes. Between phases it checks ``cancelled`` and
    raises ``LoadCancelledError`` if set, so a closing window never waits for the rest.
    Third-party plugins are tried in a separate process first, self-test results
    come from the cache when unchanged, and ``progress`` hears what is happening
    (from this thread). ``safe_mode`` loads the built-ins only.
    """
    phases: dict[str, float] = {}
    started = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal started
        now = time.perf_counter()
        phases[name] = now - started
        started = now
        if cancelled is not None and cancelled.is_set():
            raise LoadCancelledError

    def report(text: str) -> None:
        if progress is not None:
            progress(text)

    report("Loading PyTorch, the plugins and the dataset…")
    import torch  # noqa: F401 - the slow import, done here so the window shows first

    phase("torch")
    from fmnist_gui.plugins.host import get_plugin_manager
    from fmnist_gui.training.data import DataError, load_dataset

    if plugins is None:

        def checking(done: int, total: int, plugin: str) -> None:
            report(f"Checking plugins {done + 1}/{total} ({plugin})…")

        report("Loading the plugins…")
        plugins = get_plugin_manager(
            plugin_dirs,
            probe=True,
            safe_mode=safe_mode,
            selftest_cache=True,
            on_selftest=checking,
        )
    phase("plugins")
    report("Loading the dataset…")
    try:
        data = load_dataset(data_dir, allow_download=False)
        error = ""
    except DataError as exc:
        data, error = None, str(exc)
    phase("dataset")
    return {"plugins": plugins, "data": data, "data_error": error, "phases": phases}


def warm_up_optimizers() -> None:
    """Pay torch.optim's one-off cost (the first step imports torch._dynamo, seconds).

    Run in the background once the window is ready, so that a warm start, which
    skips the self-tests that used to pay it, does not make the first Start slower.
    """
    import torch
    import torch._dynamo  # what the first optimizer step would import

    # The first backward()'s imports too; no thread-count or RNG change (training
    # may start meanwhile).
    weight = torch.zeros(1, requires_grad=True)
    (weight * 2).sum().backward()
