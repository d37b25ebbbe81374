"""The Compare tab: a real race in a real worker thread, offscreen, on tiny data."""

from __future__ import annotations

import pytest
import torch

from fmnist_gui.analysis.runs import RunList
from fmnist_gui.qt.features.compare.race_view import RaceView


@pytest.fixture
def view(qtbot, plugins, tiny_data):
    runs = RunList()
    widget = RaceView(plugins, tiny_data, runs)
    qtbot.addWidget(widget)
    widget.resize(1280, 800)
    widget.show()
    yield widget
    widget.shutdown()


def test_defaults_are_the_tutorials_three_at_1e3(view):
    assert [d.optimizer for d in view.drafts] == ["sgd", "adam", "rmsprop"]
    assert [view.entry_list.item(i).text() for i in range(3)] == [
        "SGD lr=0.001",
        "Adam lr=0.001",
        "RMSProp lr=0.001",
    ]
    assert view.epochs_spin.value() == 2
    # The form is the plugin's schema: SGD's momentum field is there.
    assert "momentum" in view.param_form.fields


def test_one_click_races_all_from_identical_weights(qtbot, view):
    view.batch_spin.setValue(64)
    view.seed_edit.setText("5")
    with qtbot.waitSignal(view.race_started) as started:
        assert view.start_button.isEnabled()
        view.start_button.click()
    race = started.args[0]
    # Every member begins from the reference weights, tensor for tensor.
    for member in race.members:
        assert member.trainer.config.seed == 5
    with qtbot.waitSignal(view.race_finished, timeout=60_000):
        pass
    assert not view.running
    assert view.start_button.isEnabled()
    first_losses = {m.trainer.history.batch_losses[0] for m in race.members}
    assert len(first_losses) == 1  # same weights, same first batch
    runs = list(view.runs)
    assert [r.source for r in runs] == ["race"] * 3
    assert [len(r.epochs) for r in runs] == [2, 2, 2]
    assert [r.status for r in runs] == ["finished"] * 3
    assert all(len(r.batch_losses) == 2 * 4 for r in runs)  # pulled by the timer, all of them
    view.plots.redraw()
    assert view.plots.curve_names() == [r.name for r in runs]
    assert view.results.rowCount() == 3
    for row, result in enumerate(race.results()):
        assert view.results.item(row, 1).text() == f"{result.test_accuracy:.1%}"
    assert "Race finished" in view.status.text()


def test_initial_weights_match_tensor_for_tensor(qtbot, view):
    view.epochs_spin.setValue(1)
    with qtbot.waitSignal(view.race_started) as started:
        view.start()
    race = started.args[0]
    view.stop()
    with qtbot.waitSignal(view.race_finished, timeout=60_000):
        pass
    # Members that never trained still hold the shared initial weights.
    untouched = [m for m in race.members if not m.trainer.history.batch_losses]
    assert untouched
    for member in untouched:
        state = member.trainer.model.state_dict()
        for key, tensor in race.initial_state.items():
            assert torch.equal(state[key], tensor), key


def test_stop_ends_the_race_and_its_thread(qtbot, view):
    view.batch_spin.setValue(4)
    view.epochs_spin.setValue(50)
    view.start()
    qtbot.waitUntil(lambda: any(r.batch_losses for r in view.runs), timeout=30_000)
    assert view.stop_button.isEnabled()
    assert not view.start_button.isEnabled()
    view.stop_button.click()
    with qtbot.waitSignal(view.race_finished, timeout=30_000):
        pass
    assert view.job is None
    assert {r.status for r in view.runs} == {"stopped"}
    assert "Race stopped" in view.status.text()


def test_a_bad_setting_is_named_and_nothing_starts(view):
    view.add_entry()
    view.lr_edit.setText("fast")
    view._store_editor()
    assert not view.start()
    assert "competitor 4" in view.status.text()
    assert "fast" in view.status.text()
    assert view.job is None
    assert len(view.runs) == 0


def _statuses(view) -> dict[str, str]:
    return {
        view.results.item(row, 0).text(): view.results.item(row, 5).text()
        for row in range(view.results.rowCount())
    }


def test_status_tells_who_runs_waits_and_finished(view):
    from fmnist_gui.training.events import BatchEnd
    from fmnist_gui.training.race import Race

    view.epochs_spin.setValue(2)
    race = Race(view.entries(), view.data, view.plugins, view.base_config())
    worker = view.adopt(race)
    view.worker = worker
    names = [m.name for m in race.members]
    seen = set()
    # The worker's loop, one event at a time in this thread, the view pulling after each.
    for item in race.run():
        if type(item.event) is BatchEnd:
            worker.last_batch = item
        else:
            worker.events.append(item)
        view.pull()
        statuses = _statuses(view)
        for i, member in enumerate(race.members):
            done = len(member.trainer.history.epochs)
            text = statuses[names[i]]
            if done >= 2:
                assert text == "finished, 2/2 epochs", text
            elif worker.last_batch is not None and worker.last_batch.member == i:
                assert text == f"running, epoch {done + 1}/2", text
            else:
                assert text == f"waiting, {done}/2 epochs", text
            seen.add(text.split(",")[0])
    assert seen == {"running", "waiting", "finished"}
    assert set(_statuses(view).values()) == {"finished, 2/2 epochs"}


def test_results_follow_renames_and_hidden_runs(qtbot, view):
    view.epochs_spin.setValue(1)
    with qtbot.waitSignal(view.race_finished, timeout=60_000):
        view.start()
    first, second, third = list(view.runs)
    view.runs.rename(first.id, "my sgd")
    view.runs.set_visible(second.id, False)
    qtbot.waitUntil(lambda: view.results.rowCount() == 2)
    assert list(_statuses(view)) == ["my sgd", third.name]


def test_race_curves_share_an_epoch_axis_whatever_the_batch_size(qtbot, view):
    view.epochs_spin.setValue(1)
    view.batch_spin.setValue(16)
    with qtbot.waitSignal(view.race_finished, timeout=60_000):
        view.start()
    view.plots.redraw()
    for run in view.runs:
        curve = view.plots._curves[run.id][0]
        xs, _ = curve.getData()
        assert len(run.batch_losses) > 1
        assert xs[-1] == pytest.approx(1.0)  # one epoch ends at x = 1
