"""The divergence sentinel: every non-finite case is caught, and rollback is exact."""

from __future__ import annotations

import math

import pytest
import torch

from fmnist_gui.checkpoint import CheckpointError, save_checkpoint
from fmnist_gui.plugins.host import get_plugin_manager
from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.events import BatchEnd, EpochEnd, RunEnd
from fmnist_gui.training.sentinel import Sentinel
from fmnist_gui.training.trainer import Trainer
from tests.support.plugin_fixtures import BOMB_OPTIMIZER, write_plugin

# The tiny data set: 256 training images, so 16 batches of 16 an epoch.
BATCHES = 16


@pytest.fixture
def bomb_plugins(tmp_path):
    folder = tmp_path / "bomb-plugins"
    write_plugin(folder, "bomb", BOMB_OPTIMIZER)
    return get_plugin_manager([folder])


def bomb_trainer(data, plugins, what, blow_at, *, epochs=3, every=8, spike_factor=None):
    config = TrainConfig(
        epochs=epochs,
        batch_size=16,
        lr=0.01,
        seed=3,
        optimizer=f"bomb_{what}",
        optimizer_params={"blow_at": blow_at},
    )
    trainer = Trainer(config, data, plugins)
    trainer.sentinel = Sentinel(trainer, every=every, spike_factor=spike_factor)
    return trainer


def finite(trainer) -> bool:
    tensors = list(trainer.model.state_dict().values())
    tensors += [
        v for s in trainer.optimizer.state.values() for v in s.values() if torch.is_tensor(v)
    ]
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def test_rollback_is_tensor_equal_to_the_snapshot_and_training_goes_on(tiny_data, bomb_plugins):
    trainer = bomb_trainer(tiny_data, bomb_plugins, "nan_weights", blow_at=30)
    events = list(trainer.run())
    end = events[-1]
    assert end.status == "diverged"
    assert "Roll back" in end.message
    # Epoch 1 was recorded; nothing after the blow-up was.
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [1]
    snap = trainer.sentinel.snapshot
    assert snap is not None
    assert snap.global_step == 24

    # Continue on a diverged model refuses at once, without training a batch.
    step = trainer.global_step
    again = list(trainer.run())
    assert len(again) == 1
    assert again[0].status == "diverged"
    assert trainer.global_step == step

    expected_model = {k: v.clone() for k, v in snap.model.items()}
    expected_opt = snap.optimizer["state"]
    message = trainer.sentinel.roll_back()
    assert "rolled back from step" in message
    assert "step 24" in message
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(tensor, expected_model[name])
    restored = trainer.optimizer.state_dict()["state"]
    assert restored.keys() == expected_opt.keys()
    for index, entry in expected_opt.items():
        assert torch.equal(restored[index]["momentum_buffer"], entry["momentum_buffer"])
    assert (trainer.global_step, trainer.epochs_done, trainer.batch_in_epoch) == (24, 1, 8)
    assert len(trainer.history.batch_losses) == 24
    assert len(trainer.history.epochs) == 1
    assert trainer.diverged is None

    rest = list(trainer.run())
    assert rest[-1] == RunEnd("finished")
    assert [e.epoch for e in rest if isinstance(e, EpochEnd)] == [2, 3]
    assert trainer.global_step == 3 * BATCHES
    assert finite(trainer)


def test_rollback_can_halve_the_lr(tiny_data, bomb_plugins):
    trainer = bomb_trainer(tiny_data, bomb_plugins, "nan_weights", blow_at=5)
    assert list(trainer.run())[-1].status == "diverged"
    message = trainer.sentinel.roll_back(halve_lr=True)
    assert "halved to 0.005" in message
    assert trainer.optimizer.param_groups[0]["lr"] == 0.005
    assert trainer.config.lr == 0.005
    assert trainer.global_step == 0  # the snapshot taken when the run started


def test_nan_written_at_an_epochs_last_batch_is_caught_before_the_epoch_counts(
    tiny_data, bomb_plugins
):
    trainer = bomb_trainer(tiny_data, bomb_plugins, "nan_weights", blow_at=BATCHES, every=100)
    events = list(trainer.run())
    assert not any(isinstance(e, EpochEnd) for e in events)
    assert sum(isinstance(e, BatchEnd) for e in events) == BATCHES
    end = events[-1]
    assert end.status == "diverged"
    assert "test loss became nan" in end.message
    assert "end of epoch 1" in end.message
    assert trainer.epochs_done == 0
    assert trainer.history.epochs == []


def test_a_nan_momentum_buffer_with_finite_weights_is_divergence(tiny_data, bomb_plugins):
    trainer = bomb_trainer(tiny_data, bomb_plugins, "nan_momentum", blow_at=BATCHES, every=100)
    events = list(trainer.run())
    # The weights (and so the test loss) are still finite: the state check catches it.
    assert all(bool(torch.isfinite(p).all()) for p in trainer.model.parameters())
    assert not any(isinstance(e, EpochEnd) for e in events)
    assert events[-1].status == "diverged"
    assert "'momentum_buffer'" in events[-1].message


def test_a_loss_spike_is_divergence_only_when_asked_for(tiny_data, bomb_plugins):
    spiky = bomb_trainer(
        tiny_data, bomb_plugins, "scale_weights", blow_at=BATCHES + 4, spike_factor=5.0
    )
    end = list(spiky.run())[-1]
    assert end.status == "diverged"
    assert "jumped to" in end.message
    assert spiky.global_step == BATCHES + 5  # the first batch on the scaled weights
    plain = bomb_trainer(tiny_data, bomb_plugins, "scale_weights", blow_at=BATCHES + 4)
    losses = [e.loss for e in plain.run() if isinstance(e, BatchEnd)]
    assert len(losses) == 3 * BATCHES
    assert all(math.isfinite(x) for x in losses)
    assert losses[BATCHES + 4] > 5 * losses[BATCHES + 3]  # the spike the first one caught


def test_saving_refuses_non_finite_state_and_keeps_the_old_file(tmp_path, tiny_data, plugins):
    trainer = Trainer(TrainConfig(epochs=1, batch_size=16, seed=0), tiny_data, plugins)
    path = tmp_path / "good.pt"
    save_checkpoint(path, trainer.state_dict())
    good = path.read_bytes()
    state = trainer.state_dict()
    state["model"]["linear_relu_stack.2.weight"][0, 0] = float("inf")
    with pytest.raises(CheckpointError, match=r"linear_relu_stack\.2\.weight.*not a finite"):
        save_checkpoint(path, state)
    assert path.read_bytes() == good
