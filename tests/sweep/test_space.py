"""Search spaces come from the plugins' Param schemas, with no sweep code per optimizer."""

from __future__ import annotations

import math

import optuna
import pytest

from fmnist_gui import OptimizerSpec, Param
from fmnist_gui.sweep.space import (
    LR_RANGE,
    Range,
    SpaceError,
    TuneRequest,
    build_space,
    build_spaces,
    candidates,
)
from tests.support.plugin_fixtures import good_optimizer_source, write_plugin


def test_lr_alone_by_default_log_uniform_over_the_default_range(plugins):
    space = build_space(plugins.optimizer("adam"))
    assert [d.name for d in space.dimensions] == ["lr"]
    lr = space.distributions()["lr"]
    assert (lr.low, lr.high, lr.log) == (*LR_RANGE, True)
    # Untuned parameters keep their defaults, written down in the space.
    assert space.base == {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False}


def test_ranges_come_from_the_schema_and_exclusive_ends_stay_out(plugins):
    space = build_space(plugins.optimizer("sgd"), {"momentum": None, "nesterov": None})
    momentum = space.distributions()["momentum"]
    assert momentum.low == 0.0
    assert momentum.high < 1.0
    assert momentum.high == math.nextafter(1.0, 0)
    assert space.distributions()["nesterov"].choices == (False, True)


def test_narrowing_a_range_and_asking_for_log(plugins):
    space = build_space(
        plugins.optimizer("sgd"),
        {"lr": Range(1e-3, 0.5), "momentum": Range(0.5, 0.99)},
    )
    assert space.dimension("lr").describe() == "lr 0.001..0.5 (log)"
    assert space.dimension("momentum").describe() == "momentum 0.5..0.99"
    wd = build_space(plugins.optimizer("sgd"), {"weight_decay": Range(1e-6, 1e-2, log=True)})
    assert wd.distributions()["weight_decay"].log


@pytest.mark.parametrize(
    ("tune", "words"),
    [
        ({"weight_decay": None}, "no upper bound"),  # the schema leaves weight_decay open above
        ({"momentum": Range(0.5, 1.5)}, "outside its allowed range"),
        ({"momentum": Range(0.9, 0.1)}, "must be below"),
        ({"weight_decay": Range(0.0, 1.0, log=True)}, "must start above 0"),
        ({"nesterov": Range(0, 1)}, "takes no range"),
        ({"rho": None}, "has no parameter 'rho'"),
    ],
)
def test_bad_requests_name_the_parameter_and_the_fix(plugins, tune, words):
    with pytest.raises(SpaceError, match=words):
        build_space(plugins.optimizer("sgd"), tune)


def test_tuple_params_tune_per_component_the_rest_keeps_its_default(plugins):
    adam = plugins.optimizer("adam")
    one = build_space(adam, {"betas.1": Range(0.9, 0.9999)})
    assert [d.name for d in one.dimensions] == ["lr", "betas.1"]
    assert one.settings({"lr": 0.01, "betas.1": 0.95}) == (
        0.01,
        {"betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False},
    )
    both = build_space(adam, {"betas": None})
    assert [d.name for d in both.dimensions] == ["lr", "betas.0", "betas.1"]


def test_suggest_asks_optuna_for_each_dimension_and_builds_valid_settings(plugins):
    adam = plugins.optimizer("adam")
    space = build_space(adam, {"betas": Range(0.5, 0.99), "amsgrad": None})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    lr, params = space.suggest(trial)
    assert set(trial.params) == {"lr", "betas.0", "betas.1", "amsgrad"}
    assert lr == trial.params["lr"]
    assert params["betas"] == (trial.params["betas.0"], trial.params["betas.1"])
    assert adam.resolve(params) == params  # the plugin's own schema accepts it


def test_a_space_survives_its_json_round_trip(plugins):
    from fmnist_gui.sweep.space import OptimizerSpace

    space = build_space(plugins.optimizer("adam"), {"betas.0": None, "eps": Range(1e-9, 1e-6)})
    assert OptimizerSpace.from_dict(space.to_dict()) == space


def test_a_third_party_plugin_parameter_is_tunable_with_no_sweep_code(tmp_path):
    from fmnist_gui.plugins.host import get_plugin_manager

    folder = tmp_path / "third"
    write_plugin(folder, "adagrad_plugin", good_optimizer_source("my_adagrad", "Adagrad"))
    host = get_plugin_manager([folder])
    spec = host.optimizer("my_adagrad")
    assert [d.describe() for d in candidates(spec)] == ["lr 1e-05..1 (log)", "weight_decay 0..?"]
    space = build_space(spec, {"weight_decay": Range(0.0, 0.01)})
    assert space.dimension("weight_decay").describe() == "weight_decay 0..0.01"


def test_a_plugin_adding_an_int_parameter_gets_an_int_dimension():
    spec = OptimizerSpec(
        name="stepper",
        label="Stepper",
        factory=lambda params, lr, window: None,
        params=(Param("window", "int", 4, minimum=1, maximum=10, exclusive_maximum=True),),
    )
    (lr, window) = build_space(spec, {"window": None}).distributions().values()
    assert isinstance(window, optuna.distributions.IntDistribution)
    assert (window.low, window.high) == (1, 9)


def test_requests_without_an_optimizer_go_to_every_optimizer_that_has_the_parameter(plugins):
    specs = [plugins.optimizer(n) for n in ("sgd", "adam", "rmsprop")]
    spaces = build_spaces(
        specs,
        [TuneRequest("momentum", Range(0.0, 0.9)), TuneRequest("lr", Range(1e-4, 0.1), "adam")],
    )
    names = {s.optimizer: [d.name for d in s.dimensions] for s in spaces}
    assert names == {"sgd": ["lr", "momentum"], "adam": ["lr"], "rmsprop": ["lr", "momentum"]}
    assert spaces[1].dimension("lr").describe() == "lr 0.0001..0.1 (log)"
    # RMSProp's schema leaves momentum open above: without a range it cannot be tuned there.
    with pytest.raises(SpaceError, match="rmsprop.momentum has no upper bound"):
        build_spaces(specs, [TuneRequest("momentum")])


def test_fixed_values_replace_defaults_and_exclude_tuning(plugins):
    sgd = plugins.optimizer("sgd")
    spaces = build_spaces([sgd], fixed=[(None, "momentum", 0.9)])
    assert spaces[0].base["momentum"] == 0.9
    with pytest.raises(SpaceError, match="both tuned and fixed"):
        build_spaces([sgd], [TuneRequest("momentum")], [(None, "momentum", 0.9)])
    with pytest.raises(SpaceError, match="not among the optimizers"):
        build_spaces([sgd], [TuneRequest("momentum", None, "adam")])
    with pytest.raises(SpaceError, match="no optimizer of this sweep has a parameter 'rho'"):
        build_spaces([sgd], [TuneRequest("rho")])
