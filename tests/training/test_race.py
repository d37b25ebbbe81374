"""The optimizer race: identical start, identical batches, round robin, stop, results."""

from __future__ import annotations

import threading

import pytest
import torch

from fmnist_gui.training.config import ConfigError, TrainConfig
from fmnist_gui.training.events import BatchEnd, EpochEnd, RunEnd
from fmnist_gui.training.race import Race, RaceEntry, default_entries

BASE = TrainConfig(epochs=2, batch_size=64, seed=11, shuffle=True)


def _record_batches(trainer) -> list[torch.Tensor]:
    """Wrap the member's real BatchLoader so every batch's labels are recorded."""
    seen: list[torch.Tensor] = []
    original = trainer.train_loader.batches

    def recording(order=None, start=0):
        for X, y in original(order, start):
            seen.append(torch.cat([y.float(), X.sum(dim=(1, 2, 3))]))
            yield X, y

    trainer.train_loader.batches = recording
    return seen


def test_default_entries_are_the_tutorials_three(plugins):
    entries, notes = default_entries(plugins)
    assert [(e.optimizer, e.lr) for e in entries] == [
        ("sgd", 1e-3),
        ("adam", 1e-3),
        ("rmsprop", 1e-3),
    ]
    assert notes == []
    entries, notes = default_entries(plugins, names=("sgd", "lion"))
    assert [e.optimizer for e in entries] == ["sgd"]
    assert "lion" in notes[0]
    assert "not installed" in notes[0]


def test_members_start_identical_and_see_identical_batches(tiny_data, plugins):
    entries, _ = default_entries(plugins)
    race = Race(entries, tiny_data, plugins, BASE)
    states = [m.trainer.model.state_dict() for m in race.members]
    for state in states[1:]:
        assert state.keys() == states[0].keys()
        for key in state:
            assert torch.equal(state[key], states[0][key]), key
    seen = [_record_batches(m.trainer) for m in race.members]
    events = list(race.run())

    assert all(len(s) == 2 * 4 for s in seen)  # 256 samples / 64, two epochs
    for other in seen[1:]:
        assert all(torch.equal(a, b) for a, b in zip(seen[0], other, strict=True))
    # Same weights, same first batch: the first losses agree exactly.
    first = {
        e.member: e.event.loss
        for e in events
        if isinstance(e.event, BatchEnd) and e.event.step == 1
    }
    assert len(set(first.values())) == 1
    # Round robin by epoch: member 0 epoch 1, member 1 epoch 1, ..., member 0 epoch 2.
    ends = [(e.member, e.event.epoch) for e in events if isinstance(e.event, EpochEnd)]
    assert ends == [(0, 1), (1, 1), (2, 1), (0, 2), (1, 2), (2, 2)]
    assert [m.status for m in race.members] == ["finished"] * 3
    results = race.results()
    assert [r.name for r in results] == ["SGD lr=0.001", "Adam lr=0.001", "RMSProp lr=0.001"]
    for result, member in zip(results, race.members, strict=True):
        assert result.epochs_done == 2
        assert result.test_accuracy == member.trainer.history.epochs[-1].test_accuracy
        assert result.samples_per_second > 0


def test_identical_entries_train_identically(tiny_data, plugins):
    entries = [RaceEntry("sgd", {"momentum": 0.9}, 0.01)] * 2
    race = Race(entries, tiny_data, plugins, TrainConfig(epochs=1, batch_size=50, seed=2))
    list(race.run())
    a, b = (m.trainer.history.batch_losses for m in race.members)
    assert a == b
    assert len(a) == 6
    assert race.members[0].name == "SGD momentum=0.9 lr=0.01"
    assert race.members[1].name == "SGD momentum=0.9 lr=0.01 #2"


def test_stop_from_another_thread_stops_every_member(tiny_data, plugins):
    entries, _ = default_entries(plugins)
    race = Race(entries, tiny_data, plugins, TrainConfig(epochs=3, batch_size=16, seed=1))
    ends = {}
    for item in race.run():
        if isinstance(item.event, BatchEnd) and item.member == 1 and item.event.batch == 2:
            stopper = threading.Thread(target=race.request_stop)
            stopper.start()
            stopper.join()
        if isinstance(item.event, RunEnd):
            ends[item.member] = item.event.status
    assert ends == {0: "stopped", 1: "stopped", 2: "stopped"}
    assert race.members[1].trainer.batch_in_epoch == 3  # stopped at the next batch boundary
    assert race.members[2].trainer.history.epochs == []
    assert [r.epochs_done for r in race.results()] == [1, 0, 0]


def test_a_bad_entry_is_named_before_training(tiny_data, plugins):
    entries = [RaceEntry("sgd"), RaceEntry("sgd", {"momentum": 5.0})]
    with pytest.raises(ConfigError, match=r"race entry 2 .*momentum"):
        Race(entries, tiny_data, plugins, BASE)
    with pytest.raises(ConfigError, match="at least one"):
        Race([], tiny_data, plugins, BASE)
