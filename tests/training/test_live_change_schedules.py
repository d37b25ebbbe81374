"""What a live lr change does under each built-in schedule (as the plugin guide says)."""

from __future__ import annotations

import pytest

from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.trainer import Trainer

CHANGE = {"step": 2, "name": "lr", "value": 0.1}


def lrs_of(tiny_data, plugins, scheduler: str, params: dict, *, change: bool) -> list[float]:
    config = TrainConfig(
        epochs=2, batch_size=32, seed=1, lr=0.01, scheduler=scheduler, scheduler_params=params
    )
    trainer = Trainer(config, tiny_data, plugins)
    if change:
        trainer.plan_changes([dict(CHANGE)])  # type: ignore[list-item]
    list(trainer.run())
    return trainer.history.lrs


@pytest.mark.parametrize(
    ("scheduler", "params"),
    [("constant", {}), ("step", {"step_epochs": 1, "gamma": 0.5}), ("cosine", {})],
)
def test_chainable_schedules_go_on_from_the_changed_lr(tiny_data, plugins, scheduler, params):
    plain = lrs_of(tiny_data, plugins, scheduler, params, change=False)
    changed = lrs_of(tiny_data, plugins, scheduler, params, change=True)
    assert changed[:2] == plain[:2]
    assert changed[2] == 0.1
    # Every later lr is the schedule's own factor applied to the new value.
    for step in range(3, len(plain)):
        assert changed[step] / changed[2] == pytest.approx(plain[step] / plain[2], rel=1e-6)


def test_one_cycle_sets_its_own_lr_at_the_next_step(tiny_data, plugins):
    plain = lrs_of(tiny_data, plugins, "one_cycle", {}, change=False)
    changed = lrs_of(tiny_data, plugins, "one_cycle", {}, change=True)
    assert changed[2] == 0.1
    assert changed[3:] == plain[3:]


def test_warmup_cosine_starts_its_cosine_afresh_after_the_warm_up(tiny_data, plugins):
    params = {"warmup_steps": 4}
    plain = lrs_of(tiny_data, plugins, "warmup_cosine", params, change=False)
    changed = lrs_of(tiny_data, plugins, "warmup_cosine", params, change=True)
    assert changed[2] == 0.1
    assert changed[3] > 0.1  # the warm-up goes on rising from the new value
    assert changed[4:] == plain[4:]  # the cosine starts from the run's lr again
