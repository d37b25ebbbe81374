"""Statistics of the protocol step: one optimizer's best setting trained with several seeds.

Plain Python (``statistics``), no torch: the report and the GUI table share it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SeedRun:
    """One finished seed run: per-epoch test accuracy and cumulative training seconds."""

    seed: int
    accuracy: tuple[float, ...]  # after each epoch, fractions
    seconds: tuple[float, ...]  # training seconds up to the end of each epoch

    @property
    def final(self) -> float:
        return self.accuracy[-1]

    def epochs_to(self, target: float) -> int | None:
        """The first epoch (1-based) whose test accuracy reaches ``target``, or None."""
        return next((i + 1 for i, a in enumerate(self.accuracy) if a >= target), None)

    def seconds_to(self, target: float) -> float | None:
        epoch = self.epochs_to(target)
        return None if epoch is None else self.seconds[epoch - 1]


@dataclass(frozen=True)
class ProtocolStats:
    """Final accuracy over seeds, time to the target, and the per-epoch band.

    ``std`` is the sample standard deviation (0 with one run). Time to target is
    the mean over the runs that reached it; ``reached`` says how many did.
    """

    runs: int
    mean: float
    std: float
    min: float
    max: float
    target: float
    reached: int
    epochs_to_target: float | None
    seconds_to_target: float | None
    curve_mean: tuple[float, ...]
    curve_std: tuple[float, ...]
    curve_min: tuple[float, ...]
    curve_max: tuple[float, ...]


def protocol_stats(runs: Sequence[SeedRun], target: float) -> ProtocolStats | None:
    """Statistics of ``runs`` (None when there are none).

    The band is taken over the epochs every run finished (all of them, unless a
    run diverged and was left out by the caller).
    """
    if not runs:
        return None
    finals = [r.final for r in runs]
    epochs = min(len(r.accuracy) for r in runs)
    columns = [[r.accuracy[e] for r in runs] for e in range(epochs)]
    to_epochs = [e for e in (r.epochs_to(target) for r in runs) if e is not None]
    to_seconds = [s for s in (r.seconds_to(target) for r in runs) if s is not None]
    return ProtocolStats(
        runs=len(runs),
        mean=statistics.fmean(finals),
        std=_std(finals),
        min=min(finals),
        max=max(finals),
        target=target,
        reached=len(to_epochs),
        epochs_to_target=statistics.fmean(to_epochs) if to_epochs else None,
        seconds_to_target=statistics.fmean(to_seconds) if to_seconds else None,
        curve_mean=tuple(statistics.fmean(c) for c in columns),
        curve_std=tuple(_std(c) for c in columns),
        curve_min=tuple(min(c) for c in columns),
        curve_max=tuple(max(c) for c in columns),
    )


def _std(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def best_so_far(values: Sequence[float | None]) -> list[float]:
    """Running maximum, NaN until the first value (a pruned or failed trial has None)."""
    out, best = [], -math.inf
    for value in values:
        if value is not None:
            best = max(best, value)
        out.append(best if best > -math.inf else math.nan)
    return out


__all__ = ["ProtocolStats", "SeedRun", "best_so_far", "protocol_stats"]
