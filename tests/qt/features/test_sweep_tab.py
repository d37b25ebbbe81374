"""The Sweep tab in the real app: real engine, worker processes, SQLite study, real data subset.

Small sweeps (2,000 training images, one epoch per trial, one worker process)
keep each run to seconds; nothing of the engine is replaced.
"""

from __future__ import annotations

import csv

import pytest
from PySide6.QtGui import QImage

from fmnist_gui.sweep.storage import open_storage
from fmnist_gui.sweep.study import Sweep
from tests.support.qt_helpers import close_window, open_window

SWEEP_TIMEOUT = 240_000  # ms: worker processes import torch and load the data first


@pytest.fixture
def storage_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'sweeps.db'}"


def _open(qtbot, root, plugins, settings):
    app = open_window(qtbot, root, plugins, settings)
    assert not app.sweep.ready  # built when first shown, not before Ready
    app.show_sweep()
    return app


@pytest.fixture
def real_app(qtbot, real_data_root, plugins, settings):
    app = _open(qtbot, real_data_root, plugins, settings)
    yield app
    close_window(qtbot, app)


def _set_up(app, storage_url, optimizers, *, trials, seeds, name="gui"):
    form = app.sweep.view.form
    form.set_checked(list(optimizers))
    form.trials_spin.setValue(trials)
    form.epochs_spin.setValue(1)
    form.seeds_spin.setValue(seeds)
    form.jobs_spin.setValue(1)
    form.subset_spin.setValue(2000)
    form.storage_edit.setText(storage_url)
    form.name_edit.setText(name)
    return form


def _status(storage_url, name="gui"):
    return Sweep.open(open_storage(storage_url), name).status()


def _tuning_finished(sweep) -> int:
    """Tuning trials finished, as the tab last heard from the storage."""
    if sweep.results is None:
        return 0
    return sum(
        t.state in ("complete", "pruned", "failed")
        for o in sweep.results.optimizers
        for t in o.counted
    )


def _wait_done(qtbot, app):
    qtbot.waitUntil(lambda: app.sweep.job is None, timeout=SWEEP_TIMEOUT)
    assert not app.sweep.worker_messages


def test_a_sweep_fills_table_and_plots_and_its_best_setting_goes_to_training(
    qtbot, real_app, storage_url, tmp_path
):
    app, sweep = real_app, real_app.sweep
    _set_up(app, storage_url, ["sgd", "adam"], trials=2, seeds=1)
    assert sweep.start()
    assert sweep.view.stop_button.isEnabled()
    assert not sweep.view.start_button.isEnabled()
    _wait_done(qtbot, app)

    results = sweep.results
    assert results is not None
    status = _status(storage_url)
    assert status.done
    assert status.trials_finished == 4
    table = sweep.view.table
    assert table.rowCount() == 2
    by_name = {table.item(r, 0).text(): r for r in range(table.rowCount())}
    assert set(by_name) == {"sgd", "adam"}
    for optimizer, row in by_name.items():
        assert table.item(row, 1).text() == "2/2"
        o = next(o for o in results.optimizers if o.optimizer == optimizer)
        shown = [t for t in o.counted if t.state == "complete" or t.outcome == "pruned"]
        assert sweep.view.plots.drawn["lr"][optimizer] == len(shown)
        if o.best is not None:  # its seed run retrained the best: the band has its epoch
            assert table.item(row, 6).text() == "1/1"
            assert table.item(row, 7).text() != "–"
            assert sweep.view.plots.drawn["band"][optimizer] == 1
    assert sum(sweep.view.plots.drawn["best"].values()) >= 1

    # Use these settings: the best trial's optimizer and lr in the Training form.
    best = max((o for o in results.optimizers if o.best), key=lambda o: o.best.value)
    sweep.view.select_optimizer(best.optimizer)
    assert sweep.view.use_button.isEnabled()
    app.show_sweep()
    sweep.view.use_button.click()
    assert app.window.tabs.currentIndex() == 0
    config = app.training.panel.config()
    assert config is not None
    lr, params = results.best_settings(best.optimizer)
    assert config.optimizer == best.optimizer
    assert config.lr == pytest.approx(lr, rel=1e-5)
    assert config.epochs == 1

    # Exports: the CSV has a header and one row per trial; the PNG is a picture.
    path = sweep.export_csv(tmp_path / "trials.csv")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert header[:4] == ["sweep", "optimizer", "phase", "number"]
    assert len(body) == 2 * 2 + 2 * 1  # two tuning trials and one seed run per optimizer
    assert sorted((r[1], r[2]) for r in body) == sorted(
        [("sgd", "tune")] * 2 + [("adam", "tune")] * 2 + [("sgd", "seeds"), ("adam", "seeds")]
    )
    image = QImage(str(sweep.export_plots(tmp_path / "plots.png")))
    assert not image.isNull()
    assert image.width() > image.height() > 0


def test_bad_input_says_what_to_fix_and_starts_nothing(qtbot, app, storage_url):
    sweep = app.sweep
    app.show_sweep()
    form = _set_up(app, storage_url, [], trials=2, seeds=1)
    assert not sweep.start()
    assert "no optimizer is ticked" in sweep.view.message()
    assert sweep.job is None

    form.set_checked(["sgd"])
    form.set_tuned("lr", 0.1, 0.001)
    assert not sweep.start()
    assert "lr: the low end (0.1) must be below the high end (0.001)" in sweep.view.message()
    assert sweep.job is None

    form.set_tuned("lr", 1e-4, 0.1)
    form.set_tuned("momentum", 0.0, 5.0)  # past the schema's momentum < 1
    assert not sweep.start()
    assert "momentum" in sweep.view.message()
    assert "outside its allowed range" in sweep.view.message()

    form.set_tuned("momentum", on=False)
    form.name_edit.setText("two words")
    assert not sweep.start()
    assert "sweep name 'two words'" in sweep.view.message()
    assert sweep.job is None
    assert not (app.window.backend.data_dir / "sweeps.db").exists()


def test_a_name_taken_by_a_sweep_with_other_settings_is_refused(
    qtbot, app, storage_url, tiny_data, plugins
):
    from tests.sweep.conftest import new_sweep

    new_sweep(storage_url, tiny_data, plugins, name="gui", trials=4, seeds=1)
    sweep = app.sweep
    app.show_sweep()
    _set_up(app, storage_url, ["sgd"], trials=2, seeds=1)
    form = sweep.view.form
    form.subset_spin.setValue(0)
    assert sweep.start()  # the storage is read in the sweep's thread
    qtbot.waitUntil(lambda: sweep.job is None, timeout=60_000)
    assert "Cannot start: sweep 'gui' already exists with other settings" in sweep.view.message()
    assert "trials 2 (it has 4)" in sweep.view.message()
    assert Sweep.names(open_storage(storage_url)) == ["gui"]
    assert _status(storage_url).trials_finished == 0
    assert sweep.view.start_button.isEnabled()


def test_stop_then_resume_continues_the_same_study(qtbot, real_app, storage_url):
    app, sweep = real_app, real_app.sweep
    _set_up(app, storage_url, ["sgd"], trials=5, seeds=0)
    assert sweep.start()
    qtbot.waitUntil(lambda: _tuning_finished(sweep) >= 1, timeout=SWEEP_TIMEOUT)
    sweep.view.stop_button.click()
    _wait_done(qtbot, app)
    stopped = _status(storage_url)
    assert 1 <= stopped.trials_finished < 5
    assert not stopped.done
    assert "Resume continues it" in sweep.view.message()

    sweep.reload_names()
    assert sweep.view.form.resume_combo.currentText() == "gui"
    assert sweep.view.resume_button.isEnabled()
    sweep.view.resume_button.click()
    _wait_done(qtbot, app)
    status = _status(storage_url)
    assert status.done
    assert status.trials_finished == 5 > stopped.trials_finished
    assert Sweep.names(open_storage(storage_url)) == ["gui"]
    assert sweep.view.table.item(0, 1).text() == "5/5"


def test_quitting_mid_sweep_asks_stops_cleanly_and_the_reopened_app_resumes_it(
    qtbot, real_data_root, plugins, settings, storage_url
):
    app = _open(qtbot, real_data_root, plugins, settings)
    sweep = app.sweep
    _set_up(app, storage_url, ["sgd"], trials=4, seeds=1, name="kept")
    assert sweep.start()
    qtbot.waitUntil(lambda: sweep.sweep is not None, timeout=SWEEP_TIMEOUT)
    qtbot.waitUntil(
        lambda: _status(storage_url, "kept").trials_finished >= 1, timeout=SWEEP_TIMEOUT
    )
    app.window.close()
    assert app.window.isVisible()  # the guard asks first
    assert sweep.quit_box is not None
    sweep.quit_button.click()
    qtbot.waitUntil(lambda: not app.window.isVisible(), timeout=SWEEP_TIMEOUT)
    assert sweep.job is None
    before = _status(storage_url, "kept")
    assert not before.done
    close_window(qtbot, app)

    again = _open(qtbot, real_data_root, plugins, settings)
    try:
        form = again.sweep.view.form
        # The study and its storage came back from the settings; the list has the sweep.
        assert form.storage_edit.text() == storage_url
        assert form.resume_combo.currentText() == "kept"
        assert again.sweep.resume()
        _wait_done(qtbot, again)
        after = _status(storage_url, "kept")
        assert after.done
        assert after.trials_finished == 4 > before.trials_finished
        assert after.optimizers[0].seeds.complete == 1
    finally:
        close_window(qtbot, again)


def _row(number, state, value=None, lr=1e-2):
    from fmnist_gui.sweep.results import TrialRow

    return TrialRow(
        optimizer="sgd",
        phase="tune",
        number=number,
        state=state,
        outcome=state if state != "running" else "running",
        counted=True,
        value=value,
        lr=lr,
        params={"lr": lr},
        settings={"lr": lr},
        accuracy=(value,) if value is not None else (),
        train_seconds=(1.0,) if value is not None else (),
        epochs_run=1 if value is not None else 0,
        seed=0,
        worker="0",
        retry_of=None,
        reason="",
        duration_seconds=None,
    )


def test_best_so_far_has_a_point_per_finished_trial_not_per_running_one(qtbot):
    from fmnist_gui.qt.features.sweep.plots import SweepPlots
    from fmnist_gui.sweep.results import OptimizerResult, SweepResults
    from fmnist_gui.sweep.space import OptimizerSpace, lr_dimension
    from fmnist_gui.sweep.spec import SweepSpec

    spec = SweepSpec(spaces=(OptimizerSpace("sgd", (lr_dimension(),), {}),), trials=3, seeds=0)
    done, running = _row(0, "complete", 0.5), _row(1, "running")
    results = SweepResults("s", spec, (OptimizerResult("sgd", (done, running), (), done, None),))
    plots = SweepPlots()
    qtbot.addWidget(plots)
    plots.show_results(results)
    assert plots.drawn["best"] == {"sgd": 1}
    assert plots.drawn["lr"] == {"sgd": 1}


def test_the_optimizer_list_is_the_shared_chooser_grouped_searchable_and_tickable(
    qtbot, tmp_path, tiny_root, settings
):
    """Built-ins first, a third-party plugin as its own group; search; Space ticks."""
    from PySide6.QtCore import Qt

    from fmnist_gui.plugins.host import get_plugin_manager
    from fmnist_gui.qt.widgets.spec_chooser import HEADER_ROLE
    from tests.support.plugin_fixtures import good_optimizer_source, write_plugin

    folder = tmp_path / "plugins"
    write_plugin(folder, "my_adagrad", good_optimizer_source())
    app = _open(qtbot, tiny_root, get_plugin_manager([folder]), settings)
    try:
        form = app.sweep.view.form
        model = form.optimizer_model
        headers = [
            model.item(r).text() for r in range(model.rowCount()) if model.item(r).data(HEADER_ROLE)
        ]
        assert len(headers) == 2
        assert "(built-in)" in headers[0]
        assert headers[1].startswith("my_adagrad")
        assert form.checked_optimizers() == ["sgd", "adam", "rmsprop"]

        form.filter_edit.setText("ADAGRAD")
        assert form.shown_optimizers() == ["my_adagrad"]
        view = form.optimizer_list
        view.setFocus()
        last = form.optimizer_filter.rowCount() - 1  # the spec row below its header
        view.setCurrentIndex(form.optimizer_filter.index(last, 0))
        qtbot.keyClick(view, Qt.Key.Key_Space)
        assert form.checked_optimizers() == ["sgd", "adam", "rmsprop", "my_adagrad"]
        assert form.row_of("weight_decay") >= 0  # its schema's hyperparameter is offered

        form.filter_edit.clear()
        assert len(form.shown_optimizers()) == len(app.backend.plugins.optimizers)
        assert form.plan().optimizers == ("sgd", "adam", "rmsprop", "my_adagrad")
    finally:
        close_window(qtbot, app)


def test_a_sweep_and_training_or_a_race_never_run_at_once(qtbot, real_app, storage_url):
    """Each uses every CPU: while one runs, the others' Start is refused with the reason."""
    app, sweep = real_app, real_app.sweep
    window = app.window
    app.training.panel.epochs_spin.setValue(1)
    window.actions["start"].trigger()
    assert window.state == "running"
    _set_up(app, storage_url, ["sgd"], trials=1, seeds=0)
    assert not sweep.start()
    assert "training is running; stop or pause it first" in sweep.view.message()
    assert sweep.job is None
    window.actions["stop"].trigger()
    qtbot.waitUntil(lambda: window.state == "idle" and app.training.job is None, timeout=60_000)

    assert sweep.start()
    assert not window.actions["start"].isEnabled()
    assert "A sweep is running" in app.training.training_blocked()
    assert "a sweep is running" in app.compare.race_view.blocked_reason
    assert not app.compare.race_view.start_button.isEnabled()
    _wait_done(qtbot, app)
    assert app.training.training_blocked() == ""
    assert window.actions["start"].isEnabled()
    assert app.compare.race_view.blocked_reason == ""

    race = app.compare.race_view
    race.epochs_spin.setValue(1)
    with qtbot.waitSignal(race.race_started):
        race.start_button.click()
    assert not sweep.start()
    assert "a race is running in the Compare tab" in sweep.view.message()
    assert sweep.job is None
    race.stop_button.click()
    qtbot.waitUntil(lambda: not race.running, timeout=60_000)
