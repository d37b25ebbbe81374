"""The sweep engine in this process, on tiny data: real Optuna studies, real Trainer runs."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from fmnist_gui.sweep.events import TrialEnded, TrialEpoch, TrialStarted, WorkerEnded
from fmnist_gui.sweep.results import collect_results
from fmnist_gui.sweep.space import TuneRequest
from fmnist_gui.sweep.spec import SweepError
from fmnist_gui.sweep.study import Sweep, counted_trials, within_budget
from tests.support.plugin_fixtures import write_plugin
from tests.sweep.conftest import new_sweep, open_test_storage, run_worker


def _trials(sweep, optimizer="sgd"):
    return sorted(sweep.tuning_trials(optimizer), key=lambda t: t.number)


def test_a_sweep_tunes_each_optimizer_then_reruns_its_best_with_seeds(
    sqlite_url, tiny_data, plugins
):
    sweep = new_sweep(
        sqlite_url, tiny_data, plugins, optimizers=("sgd", "adam"), trials=3, epochs=2, seeds=2
    )
    status, events = run_worker(sweep, tiny_data, plugins)
    assert status == "complete"
    assert isinstance(events[-1], WorkerEnded)
    assert events[-1].status == "complete"

    for optimizer in ("sgd", "adam"):
        tuning = _trials(sweep, optimizer)
        assert len(tuning) == 3
        assert all(t.state != TrialState.RUNNING for t in tuning)
        best = sweep.best_trial(optimizer)
        seeds = sorted(sweep.seed_trials(optimizer), key=lambda t: t.number)
        assert [t.state for t in seeds] == [TrialState.COMPLETE] * 2
        assert [t.user_attrs["seed"] for t in seeds] == [1, 2]  # fresh seeds, not the tuning one
        for t in seeds:
            assert t.user_attrs["best_trial"] == best.number
            assert t.user_attrs["settings"]["lr"] == best.params["lr"]
            assert sorted(t.intermediate_values) == [1, 2]  # per-epoch accuracy for the band
    # Every trial reported every epoch it ran, and the events say the same.
    started = [e for e in events if isinstance(e, TrialStarted)]
    ended = [e for e in events if isinstance(e, TrialEnded)]
    assert len(started) == len(ended) == 3 * 2 + 2 * 2
    epochs = [e for e in events if isinstance(e, TrialEpoch)]
    assert sum(e.epochs_run for e in ended) == len(epochs)

    results = collect_results(sweep)
    # "Use these settings": every hyperparameter of the best trial, ready for a training form.
    lr, params = results.best_settings("adam")
    assert lr == sweep.best_trial("adam").params["lr"]
    adam = plugins.optimizer("adam")
    assert params == adam.resolve(params) == adam.resolve()  # only lr was tuned
    for o in results.optimizers:
        assert o.stats is not None
        assert o.stats.runs == 2
        assert o.stats.min <= o.stats.mean <= o.stats.max
        assert len(o.stats.curve_mean) == 2
        assert o.best.value == max(t.value for t in o.counted if t.value is not None)


def test_the_same_seed_gives_the_same_sweep_and_another_seed_another(tmp_path, tiny_data, plugins):
    def sweep_with(seed, name):
        url = f"sqlite:///{tmp_path / name}.db"
        sweep = new_sweep(url, tiny_data, plugins, trials=5, seed=seed)
        run_worker(sweep, tiny_data, plugins)
        return [(t.params, t.value, t.state) for t in _trials(sweep)]

    first, again, other = sweep_with(7, "a"), sweep_with(7, "b"), sweep_with(8, "c")
    assert first == again
    assert [p for p, _, _ in first] != [p for p, _, _ in other]


def test_a_pruned_trial_is_recorded_with_its_reason(sqlite_url, tiny_data, plugins):
    sweep = new_sweep(sqlite_url, tiny_data, plugins, trials=4, epochs=2, pruner="median")
    study = sweep.tuning_study("sgd")
    # Plain Optuna: the first three learn fast; the fourth barely moves and is cut.
    for lr in (0.5, 0.3, 0.2, 1e-5):
        study.enqueue_trial({"lr": lr})
    status, events = run_worker(sweep, tiny_data, plugins)
    assert status == "complete"
    slow = _trials(sweep)[3]
    assert slow.state == TrialState.PRUNED
    assert slow.user_attrs["outcome"] == "pruned"
    assert slow.user_attrs["epochs_run"] == 1
    assert slow.user_attrs["reason"].startswith("pruned by the median pruner after epoch 1 of 2")
    assert "below the median" in slow.user_attrs["reason"]
    assert collect_results(sweep).epochs_saved == 1
    end = [e for e in events if isinstance(e, TrialEnded) and e.number == 3][0]
    assert end.outcome == "pruned"
    assert end.reason == slow.user_attrs["reason"]


def test_refused_settings_fail_the_trial_with_the_plugins_words(sqlite_url, tiny_data, plugins):
    sweep = new_sweep(sqlite_url, tiny_data, plugins, trials=2, tune=[TuneRequest("nesterov")])
    study = sweep.tuning_study("sgd")
    study.enqueue_trial({"lr": 0.1, "nesterov": True})  # torch: nesterov needs momentum
    study.enqueue_trial({"lr": 0.1, "nesterov": False})
    assert run_worker(sweep, tiny_data, plugins)[0] == "complete"
    refused, fine = _trials(sweep)
    assert refused.state == TrialState.FAIL
    assert refused.user_attrs["outcome"] == "failed"
    assert "settings were refused" in refused.user_attrs["reason"]
    assert "momentum" in refused.user_attrs["reason"].lower()
    assert fine.state == TrialState.COMPLETE


NAN_OPTIMIZER = """
import torch
from fmnist_gui import OptimizerSpec, hookimpl

class Blowup(torch.optim.SGD):
    def step(self, closure=None):
        super().step(closure)
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if group["lr"] > 0.5:
                        p.fill_(float("nan"))

@hookimpl
def fmnist_register_optimizers():
    return [OptimizerSpec(name="blowup", label="Blowup", factory=make)]

def make(params, lr):
    return Blowup(params, lr=lr)
"""


def test_a_diverged_trial_is_pruned_with_its_reason_and_a_third_party_optimizer_runs(
    sqlite_url, tiny_data, tmp_path
):
    from fmnist_gui.plugins.host import get_plugin_manager

    folder = tmp_path / "third"
    write_plugin(folder, "blowup_plugin", NAN_OPTIMIZER)
    plugins = get_plugin_manager([folder], selftest=False)
    sweep = new_sweep(sqlite_url, tiny_data, plugins, optimizers=("blowup",), trials=2)
    study = sweep.tuning_study("blowup")
    study.enqueue_trial({"lr": 0.9})
    study.enqueue_trial({"lr": 0.1})
    assert run_worker(sweep, tiny_data, plugins)[0] == "complete"
    blown, fine = _trials(sweep, "blowup")
    # Pruned, so that TPE ranks these settings among the bad ones (it ignores failed trials).
    assert blown.state == TrialState.PRUNED
    assert blown.user_attrs["outcome"] == "diverged"
    assert blown.user_attrs["reason"].startswith("diverged: ")
    assert "the loss became nan" in blown.user_attrs["reason"]
    assert fine.state == TrialState.COMPLETE


def test_stopping_mid_trial_then_reopening_continues_the_same_study(sqlite_url, tiny_data, plugins):
    sweep = new_sweep(sqlite_url, tiny_data, plugins, trials=4, epochs=2)
    seen = []

    def stop_in_second_trial():
        epochs = [e for e in seen if isinstance(e, TrialEpoch)]
        return bool(epochs) and epochs[-1].number == 1

    from fmnist_gui.sweep.worker import SweepWorker

    worker = SweepWorker(
        sweep, tiny_data, plugins, on_event=seen.append, should_stop=stop_in_second_trial
    )
    assert worker.run() == "stopped"
    stopped = _trials(sweep)[1]
    assert stopped.state == TrialState.FAIL
    assert stopped.user_attrs["outcome"] == "stopped"
    retry = [t for t in _trials(sweep) if t.system_attrs.get("failed_trial") == 1]
    assert len(retry) == 1
    assert retry[0].state == TrialState.WAITING
    assert retry[0].params == stopped.params

    # "Reopen": a new storage object and sweep, as after quitting the app.
    reopened = Sweep.open(open_test_storage(sqlite_url), sweep.name)
    assert reopened.status().trials_finished == 1
    status, events = run_worker(reopened, tiny_data, plugins)
    assert status == "complete"
    trials = _trials(reopened)
    assert len(trials) == 5  # grew from where it stopped: 4 places + the stopped one
    counted = counted_trials(trials)
    assert [t.number for t in counted] == [0, 2, 3, 4]
    assert all(t.state == TrialState.COMPLETE for t in counted)
    rerun = [e for e in events if isinstance(e, TrialStarted) and e.retry_of == 1]
    assert len(rerun) == 1
    assert rerun[0].lr == stopped.params["lr"]
    # Nothing left: another run has nothing to do.
    assert run_worker(reopened, tiny_data, plugins)[0] == "complete"
    assert len(_trials(reopened)) == 5


def test_a_sweep_of_that_name_with_other_settings_is_refused(sqlite_url, tiny_data, plugins):
    from fmnist_gui.sweep.worker import make_spec

    new_sweep(sqlite_url, tiny_data, plugins, trials=4)
    storage = open_test_storage(sqlite_url)
    same = make_spec(plugins, tiny_data, ["sgd"], trials=4, epochs=1, seeds=0, batch_size=16)
    assert Sweep.create(storage, "t", same)[1] is False  # continued, not made anew
    other = make_spec(plugins, tiny_data, ["sgd"], trials=6, epochs=1, seeds=0, batch_size=16)
    with pytest.raises(SweepError, match="trials 6 \\(it has 4\\)"):
        Sweep.create(storage, "t", other)
    with pytest.raises(SweepError, match="no sweep named 'nope'.*sweeps there: t"):
        Sweep.open(storage, "nope")


def test_a_worker_with_other_data_is_refused(sqlite_url, tiny_data, plugins, tmp_path):
    from fmnist_gui.sweep.worker import SweepWorker
    from fmnist_gui.training.data import load_dataset
    from tests.conftest import make_tiny_fashion_mnist

    sweep = new_sweep(sqlite_url, tiny_data, plugins)
    other = load_dataset(make_tiny_fashion_mnist(tmp_path / "other", seed=1), allow_download=False)
    with pytest.raises(SweepError, match="images here differ"):
        SweepWorker(sweep, other, plugins)
    smaller = load_dataset(
        make_tiny_fashion_mnist(tmp_path / "smaller", n_train=200), allow_download=False
    )
    with pytest.raises(SweepError, match="trains on 256 images and tests on 128, but the data"):
        SweepWorker(sweep, smaller, plugins)


def test_subset_trains_on_the_first_images_only(sqlite_url, tiny_data, plugins):
    sweep = new_sweep(sqlite_url, tiny_data, plugins, trials=1, subset=100)
    assert sweep.spec.data.train_size == 100
    assert sweep.spec.data.test_size == 128
    started = []
    from fmnist_gui.sweep.worker import SweepWorker

    worker = SweepWorker(sweep, tiny_data, plugins, on_event=started.append)
    assert worker.data.train.images.data_ptr() == tiny_data.train.images.data_ptr()  # a view
    assert len(worker.data.train) == 100
    assert len(worker.data.test) == 128
    assert worker.run() == "complete"


def _trial(number, state=TrialState.COMPLETE, **system_attrs):
    trial = optuna.trial.create_trial(
        state=state, value=0.5 if state == TrialState.COMPLETE else None
    )
    trial.number = number
    trial.system_attrs.update(system_attrs)
    return trial


def test_the_budget_counts_a_retry_in_place_of_the_trial_it_reruns():
    budget = 3
    # Trial 1's worker died: failed by its heartbeat, queued again as trial 3.
    trials = [
        _trial(0),
        _trial(1, TrialState.FAIL),
        _trial(2),
        _trial(3, TrialState.WAITING, failed_trial=1, retry_history=[1]),
        _trial(4, TrialState.RUNNING),
    ]
    assert [t.number for t in counted_trials(trials)] == [0, 2, 3, 4]
    assert within_budget(trials, 3, budget)
    assert not within_budget(trials, 4, budget)  # a fourth place: surplus
    # Before the retry was queued, the failed trial still holds its place.
    assert not within_budget(trials[:3] + [_trial(4, TrialState.RUNNING)], 4, budget)
