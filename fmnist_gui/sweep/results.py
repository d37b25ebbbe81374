"""A sweep's results read back from its studies: rows for tables, series for plots.

Reads only what the workers wrote (trial states, parameters, values and user
attributes), so it works on a sweep still running, from any machine, and
without the plugins installed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from fmnist_gui.sweep.space import LR, OptimizerSpace
from fmnist_gui.sweep.spec import SweepSpec
from fmnist_gui.sweep.stats import ProtocolStats, SeedRun, best_so_far, protocol_stats
from fmnist_gui.sweep.study import SEEDS, TUNE, Sweep, counted_trials

_STATE_WORDS = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}


@dataclass(frozen=True)
class TrialRow:
    """One trial of a sweep, tuning or seed run."""

    optimizer: str
    phase: str
    number: int
    state: str  # complete, pruned, failed, running, waiting
    outcome: str  # the worker's word (events.Outcome), or "" if never started
    counted: bool  # holds a place in the budget (not retried, not surplus)
    value: float | None  # final test accuracy (complete trials)
    lr: float | None
    params: dict[str, Any]  # the tuned parameters as Optuna holds them ("betas.1")
    settings: dict[str, Any]  # lr and every optimizer hyperparameter it trained with
    accuracy: tuple[float, ...]  # test accuracy after each epoch run
    train_seconds: tuple[float, ...]  # cumulative training seconds after each epoch
    epochs_run: int
    seed: int | None
    worker: str
    retry_of: int | None
    reason: str
    duration_seconds: float | None

    @property
    def last_accuracy(self) -> float | None:
        return self.accuracy[-1] if self.accuracy else None


@dataclass(frozen=True)
class OptimizerResult:
    optimizer: str
    trials: tuple[TrialRow, ...]  # tuning trials, by number
    seed_runs: tuple[TrialRow, ...]
    best: TrialRow | None
    stats: ProtocolStats | None  # over the complete seed runs

    @property
    def counted(self) -> list[TrialRow]:
        return [t for t in self.trials if t.counted]

    def count(self, outcome: str) -> int:
        return sum(t.outcome == outcome for t in self.counted)

    def best_so_far(self) -> list[float]:
        """Best final accuracy after each counted trial (NaN before the first complete one)."""
        return best_so_far([t.value if t.state == "complete" else None for t in self.counted])

    def epochs_saved(self, epochs: int) -> int:
        """Epochs the pruner spared: the rest of each pruned trial's budget."""
        return sum(epochs - t.epochs_run for t in self.counted if t.outcome == "pruned")


@dataclass(frozen=True)
class SweepResults:
    name: str
    spec: SweepSpec
    optimizers: tuple[OptimizerResult, ...]

    @property
    def epochs_saved(self) -> int:
        return sum(o.epochs_saved(self.spec.epochs) for o in self.optimizers)

    def best_settings(self, optimizer: str) -> tuple[float, dict[str, Any]] | None:
        """``(lr, optimizer_params)`` of ``optimizer``'s best trial, for a training form."""
        for o in self.optimizers:
            if o.optimizer == optimizer and o.best is not None:
                return self.spec.space(optimizer).settings(o.best.params)
        return None

    @property
    def epochs_trained(self) -> int:
        return sum(t.epochs_run for o in self.optimizers for t in (*o.trials, *o.seed_runs))

    @property
    def epochs_budget(self) -> int:
        """Epochs of the tuning budget: what a sweep without pruning would train."""
        return self.spec.trials * self.spec.epochs * len(self.optimizers)


def collect_results(sweep: Sweep) -> SweepResults:
    """Everything the report and the plots show, read from ``sweep``'s studies now."""
    spec = sweep.spec
    out = []
    for optimizer in spec.optimizers:
        tuning = sweep.tuning_trials(optimizer)
        seeds = sweep.seed_trials(optimizer)
        space = spec.space(optimizer)
        trials = _rows(optimizer, TUNE, tuning, space)
        seed_runs = _rows(optimizer, SEEDS, seeds, space)
        complete = [t for t in trials if t.counted and t.state == "complete"]
        best = max(complete, key=lambda t: (t.value, -t.number), default=None)
        runs = [
            SeedRun(t.seed if t.seed is not None else -1, t.accuracy, t.train_seconds)
            for t in seed_runs
            if t.counted and t.state == "complete" and t.accuracy
        ]
        out.append(
            OptimizerResult(
                optimizer, trials, seed_runs, best, protocol_stats(runs, spec.target_accuracy)
            )
        )
    return SweepResults(sweep.name, spec, tuple(out))


def _rows(
    optimizer: str, phase: str, trials: list[FrozenTrial], space: OptimizerSpace
) -> tuple[TrialRow, ...]:
    counted = {t.number for t in counted_trials(trials)}
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        attrs = t.user_attrs
        if phase == TUNE and LR in t.params:
            lr, params = space.settings(t.params)
            settings = {LR: lr, **params}
        else:  # a seed run wrote down what it trained with
            settings = dict(attrs.get("settings", {}))
        lr_used: float | None = settings.get(LR)
        duration = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        value = t.value if t.state == TrialState.COMPLETE else None
        rows.append(
            TrialRow(
                optimizer=optimizer,
                phase=phase,
                number=t.number,
                state=_STATE_WORDS.get(t.state, t.state.name.lower()),
                outcome=attrs.get("outcome", "") if t.state != TrialState.WAITING else "",
                counted=t.number in counted,
                value=value if value is None or math.isfinite(value) else None,
                lr=lr_used,
                params=dict(t.params),
                settings=settings,
                accuracy=tuple(attrs.get("accuracy", ())),
                train_seconds=tuple(attrs.get("train_seconds", ())),
                epochs_run=int(attrs.get("epochs_run", 0)),
                seed=attrs.get("seed"),
                worker=str(attrs.get("worker", "")),
                retry_of=t.system_attrs.get("failed_trial"),
                reason=str(attrs.get("reason", "")),
                duration_seconds=duration,
            )
        )
    return tuple(rows)


__all__ = ["OptimizerResult", "SweepResults", "TrialRow", "collect_results"]
