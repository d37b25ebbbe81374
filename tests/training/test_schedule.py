"""LR schedules (a plugin kind) and live hyperparameter changes, in the engine.

Each built-in schedule resumes mid-schedule bit for bit through a real
checkpoint file; a live change made through the driver from another thread
equals its headless replay bit for bit, and survives a save and resume.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest
import torch

from fmnist_gui import SchedulerSpec, hookimpl
from fmnist_gui import checkpoint as ckpt
from fmnist_gui.plugins.specs import ParamError
from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.driver import RunDriver
from fmnist_gui.training.events import BatchEnd
from fmnist_gui.training.schedule import Change, parse_changes
from fmnist_gui.training.trainer import Trainer
from tests.conftest import run_stopping_after

BATCHES_PER_EPOCH = 8  # 256 tiny training images / 32

SCHEDULES = {
    "constant": {},
    "step": {"step_epochs": 1, "gamma": 0.5},
    "cosine": {"eta_min": 0.001},
    "warmup_cosine": {"warmup_steps": 4, "start_factor": 0.1},
    "one_cycle": {"max_lr": 0.1},
}


def config_for(scheduler: str, optimizer: str = "sgd") -> TrainConfig:
    return TrainConfig(
        epochs=2,
        batch_size=32,
        lr=0.05 if optimizer == "sgd" else 0.002,
        optimizer=optimizer,
        shuffle=True,
        seed=5,
        scheduler=scheduler,
        scheduler_params=dict(SCHEDULES[scheduler]),
    )


def assert_same(resumed: Trainer, reference: Trainer) -> None:
    assert resumed.history.batch_losses == reference.history.batch_losses  # exact floats
    assert resumed.history.lrs == reference.history.lrs
    assert resumed.history.changes == reference.history.changes
    assert [e.test_loss for e in resumed.history.epochs] == [
        e.test_loss for e in reference.history.epochs
    ]
    for key, value in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


def test_builtin_schedules_are_offered(plugins):
    assert set(SCHEDULES) <= set(plugins.schedulers)
    assert all(plugins.schedulers[name].plugin for name in SCHEDULES)
    assert not plugins.errors


def test_constant_schedule_keeps_the_lr(tiny_data, plugins):
    trainer = Trainer(config_for("constant"), tiny_data, plugins)
    list(trainer.run())
    assert trainer.history.lrs == [0.05] * (2 * BATCHES_PER_EPOCH)


@pytest.mark.parametrize("scheduler", sorted(SCHEDULES))
@pytest.mark.parametrize("stop_after", [3, BATCHES_PER_EPOCH + 5])
def test_resume_mid_schedule_is_bitwise_identical(
    tmp_path, tiny_data, plugins, scheduler, stop_after
):
    reference = Trainer(config_for(scheduler), tiny_data, plugins)
    assert list(reference.run())[-1].status == "finished"
    lrs = reference.history.lrs
    assert len(lrs) == 2 * BATCHES_PER_EPOCH
    if scheduler != "constant":
        assert len(set(lrs)) > 1, "the schedule never moved the lr"

    first = Trainer(config_for(scheduler), tiny_data, plugins)
    assert run_stopping_after(first, stop_after).status == "stopped"
    path = tmp_path / "ck.pt"
    ckpt.save_checkpoint(path, first.state_dict())
    torch.manual_seed(999)
    resumed = ckpt.load_trainer(path, tiny_data, plugins)
    assert resumed.config.scheduler == scheduler
    assert list(resumed.run())[-1].status == "finished"
    assert_same(resumed, reference)


def test_step_schedule_counts_epochs(tiny_data, plugins):
    trainer = Trainer(config_for("step"), tiny_data, plugins)
    list(trainer.run())
    assert trainer.history.lrs == [0.05] * BATCHES_PER_EPOCH + [0.025] * BATCHES_PER_EPOCH


class _HalvingSchedule:
    """A third party's schedule: plugged in exactly like the built-ins."""

    @hookimpl
    def fmnist_register_schedulers(self):
        def factory(optimizer, *, total_steps, steps_per_epoch, every):
            return torch.optim.lr_scheduler.StepLR(optimizer, step_size=every, gamma=0.5)

        def broken(optimizer, *, total_steps, steps_per_epoch):
            return object()

        from fmnist_gui import Param

        return [
            SchedulerSpec("halving", "Halving", factory, (Param("every", "int", 2, minimum=1),)),
            SchedulerSpec("broken", "Broken", broken),
        ]


def test_third_party_schedule_is_self_tested(tiny_data, plugins):
    record = plugins.load_plugin(_HalvingSchedule(), "halving_plugin")
    assert record.schedulers == ["halving"]
    assert "not a torch.optim.lr_scheduler.LRScheduler" in record.rejected["broken"]
    config = config_for("constant")
    config.scheduler, config.scheduler_params = "halving", {"every": 4}
    trainer = Trainer(config, tiny_data, plugins)
    list(trainer.run())
    assert trainer.history.lrs[:9] == [0.05] * 4 + [0.025] * 4 + [0.0125]


# ----- live changes -----------------------------------------------------------------


def run_with_change_from_another_thread(trainer: Trainer, at_step: int, values: dict):
    """Another thread asks for ``values`` while the run is held at step ``at_step``."""
    driver = RunDriver(trainer)
    reached, asked = threading.Event(), threading.Event()
    futures: list[Future] = []

    def other_thread():
        reached.wait()
        futures.append(driver.request_change(values))
        asked.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    for event in driver.run():
        if isinstance(event, BatchEnd) and event.step == at_step:
            reached.set()
            assert asked.wait(60)
    thread.join()
    return futures[0].result(timeout=0)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_live_change_equals_headless_replay(tmp_path, tiny_data, plugins, optimizer):
    values = {"lr": 0.2} if optimizer == "sgd" else {"lr": 0.01, "weight_decay": 0.1}
    live = Trainer(config_for("cosine", optimizer), tiny_data, plugins)
    recorded = run_with_change_from_another_thread(live, 5, values)
    assert recorded == [Change(step=5, name=k, value=v) for k, v in values.items()]
    assert live.history.changes == [dict(c) for c in recorded]

    unchanged = Trainer(config_for("cosine", optimizer), tiny_data, plugins)
    list(unchanged.run())
    assert live.history.batch_losses[:6] == unchanged.history.batch_losses[:6]
    assert live.history.batch_losses[6] != unchanged.history.batch_losses[6]

    # The replay of what the live run recorded, in the change-file format.
    replay = Trainer(config_for("cosine", optimizer), tiny_data, plugins)
    replay.plan_changes(parse_changes([{"step": 5, **values}]))
    list(replay.run())
    assert_same(replay, live)

    # A checkpoint saved before the change, resumed with the recorded list.
    early = Trainer(config_for("cosine", optimizer), tiny_data, plugins)
    run_stopping_after(early, 3)
    ckpt.save_checkpoint(tmp_path / "early.pt", early.state_dict())
    resumed = ckpt.load_trainer(tmp_path / "early.pt", tiny_data, plugins)
    resumed.plan_changes(parse_changes(live.history.changes))
    list(resumed.run())
    assert_same(resumed, live)


def test_live_change_is_saved_and_resumes(tmp_path, tiny_data, plugins):
    reference = Trainer(config_for("warmup_cosine"), tiny_data, plugins)
    run_with_change_from_another_thread(reference, 6, {"lr": 0.1, "momentum": 0.5})

    first = Trainer(config_for("warmup_cosine"), tiny_data, plugins)
    first.plan_changes(parse_changes([{"step": 6, "lr": 0.1, "momentum": 0.5}]))
    run_stopping_after(first, 10)
    ckpt.save_checkpoint(tmp_path / "ck.pt", first.state_dict())
    resumed = ckpt.load_trainer(tmp_path / "ck.pt", tiny_data, plugins)
    assert resumed.history.changes == reference.history.changes
    assert resumed.optimizer.param_groups[0]["momentum"] == 0.5
    # Replaying the same list again is harmless: those already made are skipped.
    resumed.plan_changes(parse_changes(reference.history.changes))
    list(resumed.run())
    assert_same(resumed, reference)


def test_change_while_paused_applies_at_that_boundary(tiny_data, plugins):
    trainer = Trainer(config_for("constant"), tiny_data, plugins)
    driver = RunDriver(trainer)
    recorded: list = []
    for event in driver.run():
        if isinstance(event, BatchEnd) and event.step == 2:
            driver.pause()

            def change_then_resume():
                recorded.append(driver.request_change({"lr": 0.01}).result(timeout=60))
                driver.resume()

            threading.Thread(target=change_then_resume).start()
    assert recorded == [[Change(step=2, name="lr", value=0.01)]]
    assert trainer.history.lrs[:3] == [0.05, 0.05, 0.01]
    assert set(trainer.history.lrs[2:]) == {0.01}


def test_only_live_parameters_may_change(tiny_data, plugins):
    driver = RunDriver(Trainer(config_for("constant"), tiny_data, plugins))
    with pytest.raises(ParamError, match="nesterov.*changeable: lr, momentum, weight_decay"):
        driver.request_change({"nesterov": True})
    with pytest.raises(ParamError, match="lr"):
        driver.request_change({"lr": 0})
    # Before a run, a change is made at once, at step 0.
    assert driver.request_change({"lr": "0.5"}).result() == [Change(step=0, name="lr", value=0.5)]
    assert driver.trainer.optimizer.param_groups[0]["lr"] == 0.5


def test_a_file_saved_before_schedules_resumes_as_constant(tmp_path, tiny_data, plugins):
    reference = Trainer(config_for("constant"), tiny_data, plugins)
    list(reference.run())
    first = Trainer(config_for("constant"), tiny_data, plugins)
    run_stopping_after(first, 5)
    state = first.state_dict()
    # What an older fmnist-gui wrote: no schedule, no lrs, no changes anywhere.
    del state["scheduler"]
    for key in ("scheduler", "scheduler_params"):
        del state["config"][key]
    for key in ("lrs", "changes"):
        del state["history"][key]
    ckpt.save_checkpoint(tmp_path / "old.pt", state)
    resumed = ckpt.load_trainer(tmp_path / "old.pt", tiny_data, plugins)
    assert resumed.config.scheduler == "constant"
    list(resumed.run())
    assert resumed.history.batch_losses == reference.history.batch_losses
    assert resumed.history.lrs == reference.history.lrs[5:]  # only those it saw
