"""A sweep worker: takes the next trial of a sweep from the storage, trains it, repeats.

Each trial is one ``Trainer`` run, built afresh from the sweep's settings, on the
data this process loaded once: trials share nothing that changes. Any number of
workers, in this process, in others or on other machines, may work on one sweep
at the same time; they coordinate only through the storage:

1. Dead workers' trials are failed by their stale heartbeat (any worker checks
   every study before choosing) and queued again by Optuna's retry callback.
2. Tuning comes first. A worker takes the optimizer with the fewest trials
   started that still has a place in its budget or a queued retry.
3. Once every tuning trial of an optimizer has finished, its queued seed runs
   retrain the best setting found.
4. When all that is left runs elsewhere, the worker waits and looks again; when
   nothing is left, it ends.

``should_stop()`` is polled between batches: a stopped trial is queued again
with the same settings, so a sweep continues where it stopped.
"""

from __future__ import annotations

import hashlib
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from fmnist_gui.errors import FmnistError
from fmnist_gui.plugins.host import PluginHost
from fmnist_gui.sweep.events import (
    Outcome,
    Phase,
    SweepEvent,
    TrialEnded,
    TrialEpoch,
    TrialStarted,
    WorkerEnded,
    WorkerWaiting,
)
from fmnist_gui.sweep.space import TuneRequest, build_spaces
from fmnist_gui.sweep.spec import DataIdentity, SweepError, SweepSpec
from fmnist_gui.sweep.study import (
    SEEDS,
    SURPLUS,
    TUNE,
    Sweep,
    is_retry,
    phase_status,
    within_budget,
)
from fmnist_gui.training.data import FashionMNISTData, Split
from fmnist_gui.training.driver import RunDriver
from fmnist_gui.training.events import BatchEnd, EpochEnd, RunEnd
from fmnist_gui.training.trainer import Trainer

POLL_SECONDS = 0.5


class TrialAbortedError(Exception):
    """Ends a trial as failed, its reason already recorded in its user attributes."""


class TrialStoppedError(TrialAbortedError):
    """The user stopped the trial; it is queued again."""


# ----- data --------------------------------------------------------------------------
def sweep_data(data: FashionMNISTData, subset: int | None) -> FashionMNISTData:
    """The first ``subset`` training images (views, no copy) and the whole test set."""
    if subset is None:
        return data
    if subset > len(data.train):
        raise SweepError(
            f"subset {subset} asks for more training images than the data has ({len(data.train)})"
        )
    train = Split(data.train.images[:subset], data.train.labels[:subset])
    return FashionMNISTData(train=train, test=data.test)


def data_identity(data: FashionMNISTData) -> DataIdentity:
    """Sizes and a SHA-256 of the images and labels a sweep trains and tests on."""
    digest = hashlib.sha256()
    for tensor in (data.train.images, data.train.labels, data.test.images, data.test.labels):
        digest.update(tensor.contiguous().numpy().tobytes())
    return DataIdentity(len(data.train), len(data.test), digest.hexdigest()[:16])


def check_can_run(spec: SweepSpec, data: FashionMNISTData, plugins: PluginHost) -> None:
    """Raise ``SweepError`` unless this process can run the sweep's trials as specified."""
    missing = [o for o in spec.optimizers if o not in plugins.optimizers]
    if spec.loss not in plugins.losses:
        missing.append(f"loss {spec.loss}")
    if missing:
        raise SweepError(
            f"this sweep needs plugins that are not installed here: {', '.join(missing)}"
        )
    if spec.data is None:
        return
    mine = data_identity(data)
    if (mine.train_size, mine.test_size) != (spec.data.train_size, spec.data.test_size):
        raise SweepError(
            f"this sweep trains on {spec.data.train_size} images and tests on "
            f"{spec.data.test_size}, but the data here gives {mine.train_size} and "
            f"{mine.test_size}: use the same Fashion-MNIST files (--data-dir)"
        )
    if mine.fingerprint != spec.data.fingerprint:
        raise SweepError(
            "the images here differ from the sweep's (same sizes, other content): use the "
            "same Fashion-MNIST files (--data-dir)"
        )


def make_spec(
    plugins: PluginHost,
    data: FashionMNISTData,
    optimizers: Sequence[str],
    *,
    tune: Iterable[TuneRequest] = (),
    fixed: Iterable[tuple[str | None, str, Any]] = (),
    **settings: Any,
) -> SweepSpec:
    """A checked ``SweepSpec`` for ``optimizers``, bound to ``data`` (the full set as loaded).

    ``tune`` and ``fixed`` are as for ``build_spaces``; ``settings`` are the other
    ``SweepSpec`` fields (``trials=10``, ``subset=...``). Raises ``SweepError``,
    ``SpaceError`` or ``UnknownPluginError``.
    """
    specs = [plugins.optimizer(name) for name in optimizers]
    spec = SweepSpec(spaces=tuple(build_spaces(specs, tune, fixed)), **settings).validate()
    plugins.loss(spec.loss)
    return spec.with_data(data_identity(sweep_data(data, spec.subset)))


def make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=0)
    if spec.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


@dataclass
class _Record:
    """What the objective learned about the trial it ran, for the ``TrialEnded`` event."""

    outcome: Outcome = "failed"
    value: float | None = None
    epochs_run: int = 0
    reason: str = ""
    accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


class SweepWorker:
    """Runs trials of one sweep in this process until none is left or it is stopped.

    ``data`` is the full dataset as loaded (the sweep's ``subset`` is applied here)
    and must match the sweep's; ``plugins`` must offer its optimizers and loss.
    ``worker_id`` names this worker in events and in each trial's ``worker`` user
    attribute, and keys its sampler's seed: workers that share a sweep need
    different ids. ``on_event`` gets every ``SweepEvent``; ``should_stop`` is polled
    between batches and while waiting.
    """

    def __init__(
        self,
        sweep: Sweep,
        data: FashionMNISTData,
        plugins: PluginHost,
        *,
        worker_id: str = "0",
        device: str = "auto",
        on_event: Callable[[SweepEvent], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.sweep = sweep
        self.spec = sweep.spec
        self.data = sweep_data(data, self.spec.subset)
        check_can_run(self.spec, self.data, plugins)
        self.plugins = plugins
        self.worker_id = worker_id
        self.device = device
        self.on_event = on_event or (lambda event: None)
        self.should_stop = should_stop or (lambda: False)
        self.poll_seconds = poll_seconds
        self._record = _Record()
        self._tie_offset = int.from_bytes(hashlib.sha256(worker_id.encode()).digest()[:2], "little")

    # ----- the loop ------------------------------------------------------------------
    def run(self) -> str:
        """Work until the sweep is done (``"complete"``) or a stop is asked (``"stopped"``)."""
        waiting = False
        while True:
            if self.should_stop():
                return self._end("stopped", "stopped; run again to continue the sweep")
            job = self._next_job()
            if job == "done":
                return self._end("complete", "the sweep is complete")
            if job is None:
                if not waiting:
                    self.on_event(
                        WorkerWaiting(
                            self.worker_id,
                            "the remaining trials run in other workers; waiting for them",
                        )
                    )
                    waiting = True
                self._sleep()
                continue
            waiting = False
            assert isinstance(job, tuple)  # "done" and None were handled above
            phase, optimizer = job
            if self._run_trial(phase, optimizer) == "stopped":
                return self._end("stopped", "stopped; run again to continue the sweep")

    def _end(self, status, message: str) -> str:
        self.on_event(WorkerEnded(self.worker_id, status, message))
        return status

    def _sleep(self) -> None:
        deadline = time.monotonic() + self.poll_seconds
        while time.monotonic() < deadline and not self.should_stop():
            time.sleep(min(0.05, self.poll_seconds))

    def _next_job(self) -> tuple[Phase, str] | str | None:
        """``(phase, optimizer)`` to run now, ``"done"``, or None (wait)."""
        spec, sweep = self.spec, self.sweep
        tuning = {}
        for optimizer in spec.optimizers:
            study = sweep.tuning_study(optimizer)
            _fail_stale(study)
            tuning[optimizer] = phase_status(study.get_trials(deepcopy=False), spec.trials)
        # Ties go round from a point of each worker's own, so that workers finishing
        # together do not all reach for the same optimizer's last place.
        offset = self._tie_offset % len(tuning)
        open_ones = [
            (status.finished + status.running, (index - offset) % len(tuning), optimizer)
            for index, (optimizer, status) in enumerate(tuning.items())
            if status.open_places
        ]
        if open_ones:
            return TUNE, min(open_ones)[2]
        all_done = True
        for optimizer, status in tuning.items():
            if not status.done:
                all_done = False
                continue
            study = sweep.seeds_study(optimizer)
            _fail_stale(study)
            seeds = phase_status(study.get_trials(deepcopy=False), spec.seeds)
            if seeds.waiting:
                return SEEDS, optimizer
            all_done = all_done and seeds.done
        return "done" if all_done else None

    # ----- one trial ------------------------------------------------------------------
    def _run_trial(self, phase: Phase, optimizer: str) -> str:
        if phase == TUNE:
            study = self._tuning_study(optimizer)
            objective = self._tune_objective
        else:
            study = self.sweep.seeds_study(optimizer)
            objective = self._seeds_objective
        self._record = _Record()
        number: list[int] = []

        def run(trial: Trial) -> float:
            number.append(trial.number)
            return objective(study, optimizer, trial)

        try:
            study.optimize(run, n_trials=1, catch=(TrialAbortedError,), gc_after_trial=False)
        except KeyboardInterrupt:
            if number:  # the place is not lost: the same settings run again later
                self._requeue(study, number[0])
            raise
        record = self._record
        if record.outcome == "stopped":
            self._requeue(study, number[0])
        self.on_event(
            TrialEnded(
                self.worker_id,
                optimizer,
                phase,
                number[0],
                record.outcome,
                record.value,
                record.epochs_run,
                record.reason,
            )
        )
        return "stopped" if record.outcome == "stopped" else "ran"

    def _tuning_study(self, optimizer: str) -> optuna.Study:
        existing = len(self.sweep.tuning_trials(optimizer))
        # Seeded per trial from (sweep seed, trial count, worker): one worker
        # repeats a sweep exactly, even across stops, and two workers never
        # draw the same settings from the same history.
        key = f"{self.spec.seed}/{optimizer}/{existing}/{self.worker_id}".encode()
        seed = int.from_bytes(hashlib.sha256(key).digest()[:4], "little")
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.spec.startup_trials)
        return self.sweep.tuning_study(optimizer, sampler, make_pruner(self.spec))

    def _tune_objective(self, study: optuna.Study, optimizer: str, trial: Trial) -> float:
        trials = study.get_trials(deepcopy=False)
        me = _find(trials, trial.number)
        if not is_retry(me) and not within_budget(trials, trial.number, self.spec.trials):
            self._abort(
                trial,
                SURPLUS,
                f"the budget of {self.spec.trials} trials was taken by other workers first; "
                "nothing was trained",
            )
        lr, params = self.sweep.spec.space(optimizer).suggest(trial)
        return self._train(trial, me, optimizer, TUNE, lr, params, self.spec.seed)

    def _seeds_objective(self, study: optuna.Study, optimizer: str, trial: Trial) -> float:
        me = _find(study.get_trials(deepcopy=False), trial.number)
        if "seed" not in me.user_attrs:
            self._abort(trial, SURPLUS, "every seed run was taken by other workers first")
        best = self.sweep.best_trial(optimizer)
        if best is None:
            self._abort(
                trial,
                "failed",
                f"no tuning trial of {optimizer} finished all its epochs, so there is no best "
                "setting to rerun",
            )
        lr, params = self.spec.space(optimizer).settings(best.params)
        trial.set_user_attr("settings", {"lr": lr, **_plain(params)})
        trial.set_user_attr("best_trial", best.number)
        return self._train(trial, me, optimizer, SEEDS, lr, params, me.user_attrs["seed"])

    def _train(self, trial: Trial, me: FrozenTrial, optimizer, phase, lr, params, seed) -> float:
        spec = self.spec
        # Reset what a retried trial inherited from the run that died.
        for key, value in {
            "worker": self.worker_id,
            "outcome": "running",
            "reason": "",
            "seed": seed,
            "epochs_run": 0,
            "accuracy": [],
            "train_seconds": [],
        }.items():
            trial.set_user_attr(key, value)
        self.on_event(
            TrialStarted(
                self.worker_id,
                optimizer,
                phase,
                trial.number,
                lr,
                dict(params),
                seed,
                me.system_attrs.get("failed_trial"),
            )
        )
        config = spec.train_config(optimizer, lr, params, seed, device=self.device)
        try:
            trainer = Trainer(config, self.data, self.plugins)
        except FmnistError as exc:
            self._abort(trial, "failed", f"the settings were refused: {exc}")
        elapsed = 0.0
        driver = RunDriver(trainer)
        events = driver.run()
        try:
            for event in events:
                if isinstance(event, BatchEnd):
                    if self.should_stop():
                        driver.request_stop()
                elif isinstance(event, EpochEnd):
                    elapsed += event.train_seconds
                    self._epoch_done(trial, optimizer, phase, event, elapsed)
                    # Never after the last epoch: that would throw a finished result away.
                    last = event.epoch >= self.spec.epochs
                    if phase == TUNE and not last and trial.should_prune():
                        self._prune(trial, study_trials=trial.study.get_trials(deepcopy=False))
                elif isinstance(event, RunEnd):
                    return self._run_ended(trial, phase, event)
        except (TrialAbortedError, optuna.TrialPruned):
            raise
        except Exception as exc:  # noqa: BLE001 - one trial's failure must not end the sweep
            self._abort(trial, "failed", f"training raised {type(exc).__name__}: {exc}")
        finally:
            events.close()
        raise AssertionError("Trainer.run() ended without RunEnd")

    def _epoch_done(self, trial, optimizer, phase, event: EpochEnd, elapsed: float) -> None:
        record = self._record
        record.accuracy.append(event.test_accuracy)
        record.seconds.append(elapsed)
        record.epochs_run = event.epoch
        trial.report(event.test_accuracy, event.epoch)
        trial.set_user_attr("epochs_run", event.epoch)
        trial.set_user_attr("accuracy", record.accuracy)
        trial.set_user_attr("train_seconds", record.seconds)
        self.on_event(
            TrialEpoch(
                self.worker_id,
                optimizer,
                phase,
                trial.number,
                event.epoch,
                self.spec.epochs,
                event.test_accuracy,
                event.test_loss,
                event.train_seconds,
            )
        )

    def _prune(self, trial: Trial, study_trials: list[FrozenTrial]) -> None:
        epoch = self._record.epochs_run
        accuracy = self._record.accuracy[-1]
        if self.spec.pruner == "median":
            peers = [
                t.intermediate_values[epoch]
                for t in study_trials
                if t.state == TrialState.COMPLETE and epoch in t.intermediate_values
            ]
            why = (
                f"test accuracy {accuracy:.2%}, below the median {statistics.median(peers):.2%} "
                f"of the {len(peers)} finished trials at that epoch"
                if peers
                else f"test accuracy {accuracy:.2%}"
            )
        else:
            why = f"test accuracy {accuracy:.2%}, not in the best third of its rung"
        reason = (
            f"pruned by the {self.spec.pruner} pruner after epoch {epoch} of "
            f"{self.spec.epochs}: {why}"
        )
        self._finish(trial, "pruned", reason)
        raise optuna.TrialPruned(reason)

    def _run_ended(self, trial: Trial, phase: Phase, event: RunEnd) -> float:
        record = self._record
        if event.status == "finished":
            record.value = record.accuracy[-1]
            self._finish(trial, "complete", "")
            return record.value
        if event.status == "stopped":
            self._finish(trial, "stopped", f"stopped by the user ({event.message})")
            raise TrialStoppedError(event.message)
        if event.status == "diverged":
            reason = f"diverged: {event.message}"
            if phase == TUNE:
                # Pruned, not failed: TPE then counts these settings among the bad ones
                # (it ignores failed trials) and learns to avoid too high a rate.
                self._finish(trial, "diverged", reason)
                raise optuna.TrialPruned(reason)
            self._abort(trial, "diverged", reason)
        self._abort(trial, "failed", f"training failed: {event.message}")
        raise AssertionError("unreachable")

    def _finish(self, trial: Trial, outcome: Outcome, reason: str) -> None:
        self._record.outcome, self._record.reason = outcome, reason
        trial.set_user_attr("outcome", outcome)
        trial.set_user_attr("reason", reason)

    def _abort(self, trial: Trial, outcome: Outcome, reason: str) -> NoReturn:
        self._finish(trial, outcome, reason)
        raise TrialAbortedError(reason)

    def _requeue(self, study: optuna.Study, number: int) -> None:
        """Queue trial ``number`` again, as Optuna does for a dead worker's trial."""
        trial = _find(study.get_trials(deepcopy=False), number)
        if trial.state == TrialState.RUNNING:  # interrupted before Optuna could tell
            study.tell(number, state=TrialState.FAIL)
            trial = _find(study.get_trials(deepcopy=False), number)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.RetryHeartbeatStaleTrialCallback()(study, trial)


def _find(trials: list[FrozenTrial], number: int) -> FrozenTrial:
    return next(t for t in trials if t.number == number)


def _fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _plain(params: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


__all__ = [
    "SweepWorker",
    "check_can_run",
    "data_identity",
    "make_pruner",
    "make_spec",
    "sweep_data",
]
