"""What a sweep worker reports while it works: small frozen dataclasses, picklable.

A worker in this process calls ``on_event`` with them; worker processes send
them through a queue (``fmnist_gui.sweep.pool``). The CLI prints them; a GUI
turns them into signals. ``phase`` is ``"tune"`` for tuning trials and
``"seeds"`` for the protocol's reruns of the best setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Phase = Literal["tune", "seeds"]
# complete: trained all epochs. pruned: stopped early by the pruner. diverged: the
# loss became NaN or infinite (pruned while tuning, failed in a seed run). failed:
# the optimizer refused its settings or training raised. stopped: the user stopped
# it; it is queued again with the same settings. surplus: another worker had
# already taken the budget's last place, so nothing was trained.
Outcome = Literal["complete", "pruned", "diverged", "failed", "stopped", "surplus"]
WorkerStatus = Literal["complete", "stopped", "error", "crashed"]


@dataclass(frozen=True)
class TrialStarted:
    worker: str
    optimizer: str
    phase: Phase
    number: int  # the Optuna trial number in its study
    lr: float
    params: dict[str, Any] = field(default_factory=dict)  # every optimizer hyperparameter
    seed: int = 0
    retry_of: int | None = None  # the trial this one reruns (its worker died or stopped)


@dataclass(frozen=True)
class TrialEpoch:
    worker: str
    optimizer: str
    phase: Phase
    number: int
    epoch: int  # 1-based
    epochs: int
    test_accuracy: float  # fraction
    test_loss: float
    train_seconds: float  # this epoch's


@dataclass(frozen=True)
class TrialEnded:
    worker: str
    optimizer: str
    phase: Phase
    number: int
    outcome: Outcome
    value: float | None  # final test accuracy of a complete trial
    epochs_run: int
    reason: str = ""


@dataclass(frozen=True)
class WorkerWaiting:
    """Nothing to start now: the remaining trials run elsewhere (or wait for a dead one)."""

    worker: str
    message: str


@dataclass(frozen=True)
class WorkerEnded:
    worker: str
    status: WorkerStatus
    message: str = ""


SweepEvent = TrialStarted | TrialEpoch | TrialEnded | WorkerWaiting | WorkerEnded

__all__ = [
    "Outcome",
    "Phase",
    "SweepEvent",
    "TrialEnded",
    "TrialEpoch",
    "TrialStarted",
    "WorkerEnded",
    "WorkerStatus",
    "WorkerWaiting",
]
