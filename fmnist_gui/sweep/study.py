"""A sweep in Optuna's storage: one study per optimizer, one per optimizer's seed runs.

Why not one study for the whole sweep: TPE splits a study's trials into good and
bad ones across *all* its trials, so in a mixed study Adam's good trials would
crowd SGD's out of the "good" set and SGD would be tuned from its prior alone.
One study per optimizer gives each the same budget and its own model, and each
is a plain Optuna study with plain parameter names (``lr``, ``momentum``) that
``optuna.load_study`` and optuna-dashboard open as they are:

* ``NAME:OPTIMIZER``: the tuning trials (TPE, pruned on per-epoch test accuracy);
* ``NAME:OPTIMIZER:seeds``: the protocol step, the best setting retrained with
  fresh seeds. Its trials are queued (``WAITING``, one per seed) when the sweep is
  made and taken by workers once that optimizer's tuning is over.

Every study carries the sweep's ``SweepSpec`` as JSON in its user attributes.

The budget stays exact with any number of workers: a new tuning trial counts
only if fewer than ``trials`` counted trials come before it (by number). Counted
are all trials except those retried (their retry counts instead) and the ones
turned away for that reason (``outcome`` ``surplus``, failed without training).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from fmnist_gui.sweep.spec import SweepError, SweepSpec

SPEC_ATTR = "fmnist_sweep"
ROLE_ATTR = "fmnist_sweep_role"
TUNE: Literal["tune"] = "tune"
SEEDS: Literal["seeds"] = "seeds"
SEPARATOR = ":"
# Reasons a finished trial records in its user attribute "outcome".
SURPLUS: Literal["surplus"] = "surplus"


def tuning_study_name(sweep: str, optimizer: str) -> str:
    return f"{sweep}{SEPARATOR}{optimizer}"


def seeds_study_name(sweep: str, optimizer: str) -> str:
    return f"{sweep}{SEPARATOR}{optimizer}{SEPARATOR}{SEEDS}"


def check_name(name: str) -> str:
    """A sweep name: letters, digits, ``_ . -``; no ``:``, which joins its study names."""
    if not name or not all(c.isalnum() or c in "_.-" for c in name) or not name[0].isalnum():
        raise SweepError(
            f"sweep name {name!r}: use letters, digits, '_', '.' and '-', starting with a "
            "letter or digit"
        )
    return name


def retried_numbers(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of trials that were queued again (after a dead worker or a stop)."""
    found: set[int] = set()
    for trial in trials:
        found.update(trial.system_attrs.get("retry_history", ()))
    return found


def counted_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that take a place in the budget, by number."""
    retried = retried_numbers(trials)
    return sorted(
        (t for t in trials if t.number not in retried and t.user_attrs.get("outcome") != SURPLUS),
        key=lambda t: t.number,
    )


def within_budget(trials: Sequence[FrozenTrial], number: int, budget: int) -> bool:
    """Whether trial ``number`` holds one of the first ``budget`` places."""
    counted = [t.number for t in counted_trials(trials)]
    return number in counted[:budget]


def is_retry(trial: FrozenTrial) -> bool:
    return "failed_trial" in trial.system_attrs


@dataclass(frozen=True)
class PhaseStatus:
    """Where one study stands: counted trials by state, against its budget."""

    budget: int
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed

    @property
    def done(self) -> bool:
        """Every place taken and finished: nothing runs or waits."""
        return self.finished >= self.budget and not self.running and not self.waiting

    @property
    def open_places(self) -> int:
        """Trials still to start: free places, plus queued retries."""
        return max(0, self.budget - self.finished - self.running - self.waiting) + self.waiting


def phase_status(trials: Sequence[FrozenTrial], budget: int) -> PhaseStatus:
    counts = {s: 0 for s in TrialState}
    for trial in counted_trials(trials):
        counts[trial.state] += 1
    return PhaseStatus(
        budget=budget,
        complete=counts[TrialState.COMPLETE],
        pruned=counts[TrialState.PRUNED],
        failed=counts[TrialState.FAIL],
        running=counts[TrialState.RUNNING],
        waiting=counts[TrialState.WAITING],
    )


@dataclass(frozen=True)
class OptimizerStatus:
    optimizer: str
    tuning: PhaseStatus
    seeds: PhaseStatus
    best_value: float | None


@dataclass(frozen=True)
class SweepStatus:
    name: str
    optimizers: tuple[OptimizerStatus, ...]

    @property
    def done(self) -> bool:
        return all(o.tuning.done and o.seeds.done for o in self.optimizers)

    @property
    def trials_finished(self) -> int:
        return sum(o.tuning.finished for o in self.optimizers)

    @property
    def trials_budget(self) -> int:
        return sum(o.tuning.budget for o in self.optimizers)


class Sweep:
    """One sweep in one storage: its spec and its studies.

    Make one with ``Sweep.create`` (new, or continue an identical one) or
    ``Sweep.open`` (an existing one, as a worker joining it does).
    """

    def __init__(self, storage: BaseStorage, name: str, spec: SweepSpec) -> None:
        self.storage = storage
        self.name = name
        self.spec = spec

    # ----- making and finding ---------------------------------------------------
    @classmethod
    def create(cls, storage: BaseStorage, name: str, spec: SweepSpec) -> tuple[Sweep, bool]:
        """Make the sweep's studies, or continue the sweep of that name if it is the same.

        Returns ``(sweep, created)``. A sweep of that name with other settings is a
        ``SweepError`` listing the differences. Each study is created once even if
        another process makes the same sweep at the same moment (the seed runs could
        then be queued twice: make a sweep from one place, join it from the others).
        """
        check_name(name)
        spec.validate()
        existing = cls.find_spec(storage, name)
        if existing is not None:
            differences = existing.differences(spec)
            if differences:
                raise SweepError(
                    f"sweep {name!r} already exists with other settings "
                    f"({'; '.join(differences)}): leave them as they were to continue it, "
                    "or give a new --study name"
                )
            return cls(storage, name, existing), False
        sweep = cls(storage, name, spec)
        # Seed queues first: the sweep is found (by its tuning studies) only once
        # they are all in place, so no worker ever sees half a sweep.
        for optimizer in spec.optimizers:
            sweep._create_study(seeds_study_name(name, optimizer), SEEDS, optimizer)
        sweep._complete_seed_queues()
        for optimizer in spec.optimizers:
            sweep._create_study(tuning_study_name(name, optimizer), TUNE, optimizer)
        return sweep, True

    @classmethod
    def open(cls, storage: BaseStorage, name: str) -> Sweep:
        """The existing sweep ``name``; ``SweepError`` (listing the known ones) if none."""
        spec = cls.find_spec(storage, name)
        if spec is None:
            known = ", ".join(cls.names(storage)) or "none"
            raise SweepError(f"no sweep named {name!r} in this storage (sweeps there: {known})")
        return cls(storage, name, spec)

    @staticmethod
    def names(storage: BaseStorage) -> list[str]:
        """The sweeps in ``storage`` (studies of other programs are left out)."""
        found = set()
        for study in storage.get_all_studies():
            if study.user_attrs.get(ROLE_ATTR) == TUNE and SEPARATOR in study.study_name:
                found.add(study.study_name.rsplit(SEPARATOR, 1)[0])
        return sorted(found)

    @staticmethod
    def find_spec(storage: BaseStorage, name: str) -> SweepSpec | None:
        prefix = f"{name}{SEPARATOR}"
        for study in storage.get_all_studies():
            if not study.study_name.startswith(prefix):
                continue
            attrs = study.user_attrs
            if SPEC_ATTR in attrs and attrs.get(ROLE_ATTR) == TUNE:
                return SweepSpec.from_dict(json.loads(attrs[SPEC_ATTR]))
        return None

    def _create_study(self, study_name: str, role: str, optimizer: str) -> None:
        try:
            study_id = self.storage.create_new_study(
                [optuna.study.StudyDirection.MAXIMIZE], study_name
            )
        except optuna.exceptions.DuplicatedStudyError:
            return  # another process made it a moment ago
        self.storage.set_study_user_attr(study_id, "optimizer", optimizer)
        self.storage.set_study_user_attr(study_id, SPEC_ATTR, self.spec.to_json())
        # The role last: a study is found as part of a sweep only once it is whole.
        self.storage.set_study_user_attr(study_id, ROLE_ATTR, role)

    def _complete_seed_queues(self) -> None:
        """Queue each seed run not queued yet: once, by the process that made the sweep.

        Run again when that process died half-way and the sweep is made anew.
        """
        for optimizer in self.spec.optimizers:
            study = self.seeds_study(optimizer)
            attrs = study.user_attrs
            if attrs.get("queued") == self.spec.seeds:
                continue
            present = {t.user_attrs.get("seed_index") for t in study.get_trials(deepcopy=False)}
            for index in range(self.spec.seeds):
                if index not in present:
                    study.enqueue_trial(
                        {},
                        user_attrs={"seed_index": index, "seed": self.spec.seed_of_run(index)},
                    )
            study.set_user_attr("queued", self.spec.seeds)

    # ----- studies ----------------------------------------------------------------
    def tuning_study(self, optimizer: str, sampler=None, pruner=None) -> optuna.Study:
        return optuna.load_study(
            study_name=tuning_study_name(self.name, optimizer),
            storage=self.storage,
            sampler=sampler,
            pruner=pruner,
        )

    def seeds_study(self, optimizer: str) -> optuna.Study:
        return optuna.load_study(
            study_name=seeds_study_name(self.name, optimizer),
            storage=self.storage,
            sampler=optuna.samplers.RandomSampler(),  # never samples: every trial is queued
            pruner=optuna.pruners.NopPruner(),
        )

    def tuning_trials(self, optimizer: str) -> list[FrozenTrial]:
        return self.tuning_study(optimizer).get_trials(deepcopy=False)

    def seed_trials(self, optimizer: str) -> list[FrozenTrial]:
        return self.seeds_study(optimizer).get_trials(deepcopy=False)

    def best_trial(self, optimizer: str) -> FrozenTrial | None:
        """The tuning trial with the highest final accuracy among the counted, or None."""
        complete = [
            t
            for t in counted_trials(self.tuning_trials(optimizer))
            if t.state == TrialState.COMPLETE
        ]
        return max(complete, key=lambda t: (t.value, -t.number), default=None)

    def status(self) -> SweepStatus:
        rows = []
        for optimizer in self.spec.optimizers:
            tuning = self.tuning_trials(optimizer)
            best = self.best_trial(optimizer)
            rows.append(
                OptimizerStatus(
                    optimizer,
                    phase_status(tuning, self.spec.trials),
                    phase_status(self.seed_trials(optimizer), self.spec.seeds),
                    best.value if best is not None else None,
                )
            )
        return SweepStatus(self.name, tuple(rows))


__all__ = [
    "OptimizerStatus",
    "PhaseStatus",
    "SEEDS",
    "SURPLUS",
    "Sweep",
    "SweepStatus",
    "TUNE",
    "check_name",
    "counted_trials",
    "phase_status",
    "seeds_study_name",
    "tuning_study_name",
    "within_budget",
]
