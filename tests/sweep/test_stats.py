"""The protocol's statistics, checked against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from fmnist_gui.sweep.stats import SeedRun, best_so_far, protocol_stats


def test_final_accuracy_spread_and_time_to_target():
    runs = [
        SeedRun(1, (0.70, 0.80, 0.84), (10.0, 20.0, 30.0)),
        SeedRun(2, (0.75, 0.82, 0.86), (11.0, 22.0, 33.0)),
        SeedRun(3, (0.60, 0.70, 0.79), (9.0, 18.0, 27.0)),  # never reaches 80 %
    ]
    s = protocol_stats(runs, target=0.80)
    assert s.runs == 3
    assert s.mean == pytest.approx((0.84 + 0.86 + 0.79) / 3)
    assert s.std == pytest.approx(math.sqrt(((0.84 - s.mean) ** 2 + (0.86 - s.mean) ** 2
                                             + (0.79 - s.mean) ** 2) / 2))  # fmt: skip
    assert (s.min, s.max) == (0.79, 0.86)
    assert s.reached == 2
    assert s.epochs_to_target == 2.0  # epoch 2 for both that made it
    assert s.seconds_to_target == pytest.approx((20.0 + 22.0) / 2)
    assert s.curve_mean == pytest.approx(((0.70 + 0.75 + 0.60) / 3, (0.80 + 0.82 + 0.70) / 3,
                                          s.mean))  # fmt: skip
    assert s.curve_min == (0.60, 0.70, 0.79)
    assert s.curve_max == (0.75, 0.82, 0.86)


def test_one_run_has_no_spread_and_no_runs_no_stats():
    s = protocol_stats([SeedRun(1, (0.5,), (1.0,))], target=0.9)
    assert s.std == 0.0
    assert s.reached == 0
    assert s.epochs_to_target is None
    assert protocol_stats([], target=0.8) is None


def test_best_so_far_skips_pruned_and_failed_trials():
    got = best_so_far([None, 0.5, None, 0.4, 0.7])
    assert math.isnan(got[0])
    assert got[1:] == [0.5, 0.5, 0.5, 0.7]
