"""Worker processes on this machine, all working on one sweep through its storage.

Each process is started fresh (``spawn``: no torch state copied from the
parent), sets its torch thread count, loads the plugins and the data once, and
runs a ``SweepWorker`` until the sweep is done or it is told to stop. Their
events come back through one queue, so a caller (the CLI, or a GUI thread)
iterates ``WorkerPool.events()`` as it would a ``Trainer.run()``.

Processes, not threads: a small MLP's batch is dozens of short kernels, and on a
few cores several one-thread trainers side by side beat one trainer with all
threads (OpenMP's fork-join overhead dominates kernels this small).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from fmnist_gui.errors import FmnistError
from fmnist_gui.sweep.events import SweepEvent, WorkerEnded
from fmnist_gui.sweep.storage import DEFAULT_GRACE, DEFAULT_HEARTBEAT

MAX_DEFAULT_JOBS = 4


def cpu_count() -> int:
    """CPUs this process may run on (its affinity, where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_jobs() -> int:
    """One worker per CPU, at most 4: more rarely pays on a 30-trial budget."""
    return max(1, min(cpu_count(), MAX_DEFAULT_JOBS))


def threads_per_worker(jobs: int) -> int:
    """Torch threads for each of ``jobs`` workers: the CPUs shared out, at least one."""
    return max(1, cpu_count() // max(1, jobs))


@dataclass(frozen=True)
class WorkerSetup:
    """Everything a worker process needs to join a sweep (picklable)."""

    storage_url: str
    study: str
    data_dir: Path
    allow_download: bool = False
    plugin_dirs: tuple[Path, ...] | None = None
    device: str = "auto"
    threads: int = 1
    heartbeat: int = DEFAULT_HEARTBEAT
    grace: int = DEFAULT_GRACE
    poll_seconds: float = 0.5


class WorkerPool:
    """``len(worker_ids)`` worker processes on one sweep.

    ``events()`` starts them and yields every ``SweepEvent`` until each has ended;
    a process that dies without saying so ends with status ``"crashed"``.
    ``request_stop()`` (any thread) asks each to stop after its current batch,
    leaving its trial queued to run again. The ids key each worker's sampler
    seed, so pools that work on one sweep at once need ids of their own.
    """

    def __init__(self, setup: WorkerSetup, worker_ids: Sequence[str]) -> None:
        if not worker_ids:
            raise ValueError("a pool needs at least one worker")
        self.setup = setup
        self.worker_ids = list(worker_ids)
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._queue = self._context.Queue()
        self._processes: dict[str, multiprocessing.process.BaseProcess] = {}

    def request_stop(self) -> None:
        self._stop.set()

    def kill(self) -> None:
        """End every process now (their trials are retried once their heartbeat is stale)."""
        for process in self._processes.values():
            if process.is_alive():
                process.kill()
        for process in self._processes.values():
            process.join(timeout=5)

    def events(self, poll_seconds: float = 0.2) -> Iterator[SweepEvent]:
        for worker_id in self.worker_ids:
            process: multiprocessing.process.BaseProcess = self._context.Process(
                target=_worker_main,
                args=(self.setup, worker_id, self._queue, self._stop),
                name=f"fmnist-sweep-{worker_id}",
                daemon=True,
            )
            process.start()
            self._processes[worker_id] = process
        running = set(self.worker_ids)
        try:
            while running:
                try:
                    event = self._queue.get(timeout=poll_seconds)
                except queue.Empty:
                    for worker_id in sorted(running):
                        process = self._processes[worker_id]
                        if process.is_alive():
                            continue
                        # Its last words may still be in the pipe: read them first.
                        yield from self._drain(running)
                        if worker_id in running:
                            running.discard(worker_id)
                            yield WorkerEnded(
                                worker_id,
                                "crashed",
                                f"the worker process ended without a word (exit code "
                                f"{process.exitcode})",
                            )
                    continue
                if isinstance(event, WorkerEnded):
                    running.discard(event.worker)
                yield event
        finally:
            if running:  # the caller stopped listening: stop the workers, then wait
                self._stop.set()
            for process in self._processes.values():
                process.join(timeout=30)
            self.kill()

    def _drain(self, running: set[str]) -> Iterator[SweepEvent]:
        while True:
            try:
                event = self._queue.get(timeout=0.5)
            except queue.Empty:
                return
            if isinstance(event, WorkerEnded):
                running.discard(event.worker)
            yield event


def _worker_main(setup: WorkerSetup, worker_id: str, events, stop) -> None:
    """A worker process: the parent owns Ctrl-C and passes a stop on through ``stop``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        run_worker_process(setup, worker_id, events.put, stop.is_set)
    except FmnistError as exc:
        events.put(WorkerEnded(worker_id, "error", str(exc)))
    except BaseException as exc:  # noqa: BLE001 - reported, then the process ends
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        events.put(WorkerEnded(worker_id, "error", f"the worker failed: {last}"))


def run_worker_process(setup: WorkerSetup, worker_id: str, on_event, should_stop) -> str:
    """Set this process up as a worker (threads, plugins, data, storage) and run it."""
    import torch

    torch.set_num_threads(setup.threads)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    from fmnist_gui.plugins.host import get_plugin_manager
    from fmnist_gui.sweep.storage import open_storage
    from fmnist_gui.sweep.study import Sweep
    from fmnist_gui.sweep.worker import SweepWorker
    from fmnist_gui.training.data import load_dataset

    storage = open_storage(setup.storage_url, heartbeat=setup.heartbeat, grace=setup.grace)
    sweep = Sweep.open(storage, setup.study)
    plugins = get_plugin_manager(setup.plugin_dirs)
    data = load_dataset(setup.data_dir, allow_download=setup.allow_download)
    worker = SweepWorker(
        sweep,
        data,
        plugins,
        worker_id=worker_id,
        device=setup.device,
        on_event=on_event,
        should_stop=should_stop,
        poll_seconds=setup.poll_seconds,
    )
    return worker.run()


__all__ = [
    "WorkerPool",
    "WorkerSetup",
    "cpu_count",
    "default_jobs",
    "run_worker_process",
    "threads_per_worker",
]
