"""Run control for one ``Trainer``: stop, pause and snapshots, from any thread.

No Qt here. As in superqt's ``GeneratorWorker``, control belongs to whoever
calls ``next()``: ``RunDriver.run()`` iterates ``trainer.run()`` in the thread
that trains, and between two events (the trainer is then at a batch boundary)
it serves snapshot requests, blocks while paused, and stops iterating once a
stop was asked for. Other threads only set flags or queue a request:

    driver = RunDriver(trainer)
    for event in driver.run():      # the training thread
        ...
    driver.request_stop()           # any thread: the run ends with RunEnd("stopped")
    driver.request_snapshot()       # any thread: a Future of trainer.state_dict()
    driver.request_change({"lr": 0.01})  # any thread: applied at the next batch boundary

The CLI, the window's training worker and the race share it.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Mapping
from concurrent.futures import Future
from typing import Any

from fmnist_gui.training.events import BatchEnd, EpochStart, Event, RunEnd
from fmnist_gui.training.schedule import Change
from fmnist_gui.training.state import TrainingState
from fmnist_gui.training.trainer import Trainer

# How often a paused run looks for snapshot requests.
_PAUSED_POLL_SECONDS = 0.05


class RunDriver:
    """Iterates one ``Trainer``'s runs; stop, pause and snapshots may come from any thread.

    ``run()`` is called by one thread at a time, the one that trains. The
    other methods are thread-safe. ``request_stop()`` may also be called from
    a signal handler in the training thread (it only sets flags).
    """

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        # A plain bool: a store is atomic, and setting it takes no lock, so a
        # signal handler cannot deadlock on one its own thread holds.
        self._stop_requested = False
        self._unpaused = threading.Event()
        self._unpaused.set()
        # Snapshot requests and whether a run is going: both change under the lock,
        # so a request is either served by the run or taken at once when none is going.
        self._lock = threading.Lock()
        self._pending: list[Future[TrainingState]] = []
        self._changes: list[tuple[dict[str, Any], Future[list[Change]]]] = []
        self._running = False

    # ----- control (any thread) ----------------------------------------------------
    def request_stop(self) -> None:
        """Stop at the next batch boundary; asked before ``run()``, the run stops at once.

        A stop asked after an epoch's last batch lets that epoch's test pass
        (its ``EpochEnd``) come first. The request is used up when the run ends.
        """
        self._stop_requested = True
        self._unpaused.set()  # a paused run must wake up to stop

    def pause(self) -> None:
        """Block the run at the next batch boundary, until ``resume()`` or a stop."""
        self._unpaused.clear()

    def resume(self) -> None:
        self._unpaused.set()

    @property
    def paused(self) -> bool:
        return not self._unpaused.is_set()

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    @property
    def running(self) -> bool:
        """True from the start of ``run()`` until its ``RunEnd`` is handed out."""
        return self._running

    def request_snapshot(self) -> Future[TrainingState]:
        """A ``Future`` of ``trainer.state_dict()`` taken at a batch boundary.

        During a run, the training thread takes it between two events (also
        while paused) and goes on; a run that fails first sets an exception
        instead. When no run is going, it is taken at once, in this thread.
        """
        future: Future[TrainingState] = Future()
        with self._lock:
            if self._running:
                self._pending.append(future)
                return future
            _fulfil([future], self.trainer)
        return future

    def request_change(self, values: Mapping[str, Any]) -> Future[list[Change]]:
        """Change hyperparameters (``{"lr": 0.01}``) at the next batch boundary.

        The values are checked at once, in this thread (``ParamError`` names what
        may change). During a run, the training thread applies them between two
        events (also while paused); otherwise they are applied at once. The
        ``Future`` holds the recorded changes (``Trainer.apply_change``).
        """
        checked = self.trainer.check_change(dict(values))
        future: Future[list[Change]] = Future()
        with self._lock:
            if self._running:
                self._changes.append((checked, future))
                return future
            _apply([(checked, future)], self.trainer)
        return future

    # ----- the run (the training thread) ----------------------------------------------
    def run(self) -> Generator[Event, None, None]:
        """The trainer's events, ending with one ``RunEnd``; see the class for control."""
        with self._lock:
            if self._running:
                raise RuntimeError("this RunDriver is already running")
            self._running = True
        events = self.trainer.run()
        last: Event | None = None
        failure: str | None = "the run raised an exception"
        try:
            while True:
                self._apply_changes()
                self._serve_snapshots()
                if not self._unpaused.is_set():
                    self._wait_while_paused()
                if self._stop_requested and self._stops_after(last):
                    events.close()  # the trainer is left at this batch boundary
                    end = RunEnd("stopped", self._stopped_where(last))
                    break
                event = next(events)
                if isinstance(event, RunEnd):
                    end = event
                    break
                yield event
                last = event
            # A failed step may have left the weights half-updated: no snapshot of that.
            failure = f"training failed: {end.message}" if end.status == "failed" else None
        except GeneratorExit:
            failure = None  # the caller stopped iterating: still a batch boundary
            raise
        finally:
            events.close()
            self._end_run(failure)
        yield end

    def _apply_changes(self) -> None:
        if self._changes:  # cheap unlocked look first: this runs once per batch
            with self._lock:
                changes, self._changes = self._changes, []
            _apply(changes, self.trainer)

    def _serve_snapshots(self) -> None:
        if self._pending:  # cheap unlocked look first: this runs once per batch
            with self._lock:
                pending, self._pending = self._pending, []
            _fulfil(pending, self.trainer)

    def _wait_while_paused(self) -> None:
        with self.trainer.epoch_clock.paused():  # a pause is not training time
            while not self._stop_requested and not self._unpaused.wait(_PAUSED_POLL_SECONDS):
                self._apply_changes()  # changing while paused
                self._serve_snapshots()  # saving while paused

    def _stops_after(self, last: Event | None) -> bool:
        # What is done is finished first: an epoch whose batches are all trained
        # gets its test pass (EpochEnd), and a run past its last epoch "finished".
        if isinstance(last, BatchEnd) and last.ends_epoch:
            return False
        return not self.trainer.finished

    def _stopped_where(self, last: Event | None) -> str:
        trainer = self.trainer
        if isinstance(last, (EpochStart, BatchEnd)):
            return (
                f"stopped at epoch {trainer.epochs_done + 1}, batch {trainer.batch_in_epoch} "
                f"of {last.num_batches}"
            )
        return f"stopped after epoch {trainer.epochs_done}"

    def _end_run(self, failure: str | None) -> None:
        """Answer the requests left, at the run's last boundary, unless it failed."""
        with self._lock:
            pending, self._pending = self._pending, []
            changes, self._changes = self._changes, []
            if failure is None:
                _apply(changes, self.trainer)
                _fulfil(pending, self.trainer)
            else:
                for future in pending:
                    future.set_exception(RuntimeError(failure))
                for _, change in changes:
                    change.set_exception(RuntimeError(failure))
            self._running = False
            self._stop_requested = False


def _apply(changes: list[tuple[dict[str, Any], Future[list[Change]]]], trainer: Trainer) -> None:
    for values, future in changes:
        try:
            future.set_result(trainer.apply_change(values))
        except Exception as exc:  # noqa: BLE001 - handed to whoever asked
            future.set_exception(exc)


def _fulfil(futures: list[Future[TrainingState]], trainer: Trainer) -> None:
    if not futures:
        return
    try:
        state = trainer.state_dict()
    except Exception as exc:  # noqa: BLE001 - handed to whoever asked
        for future in futures:
            future.set_exception(exc)
        return
    for future in futures:
        future.set_result(state)


__all__ = ["RunDriver"]
