"""Single specs turned off and on: the host honours the choice, the settings keep it.

Real plugin files and real installed distributions (``plugin_fixtures``); the
plugin host is the real one, loaded afresh for every "start".
"""

from __future__ import annotations

import shutil

import pytest

from fmnist_gui.plugins.host import UnknownPluginError, get_plugin_manager
from fmnist_gui.plugins.installer import PluginSettings
from fmnist_gui.plugins.selftest import SelfTestCache
from tests.support.plugin_fixtures import forgetting_plugin_modules, make_distribution, write_plugin

TWO = """
import torch
from fmnist_gui import OptimizerSpec, hookimpl

@hookimpl
def fmnist_register_optimizers():
    return [
        OptimizerSpec(name="two_adagrad", label="Adagrad",
                      factory=lambda params, lr: torch.optim.Adagrad(params, lr=lr)),
        OptimizerSpec(name="two_nadam", label="NAdam",
                      factory=lambda params, lr: torch.optim.NAdam(params, lr=lr)),
        OptimizerSpec(name="two_stuck", label="Stuck",
                      factory=lambda params, lr: torch.optim.SGD(params, lr=0.0)),
    ]
"""


@pytest.fixture(autouse=True)
def _forget_plugin_modules():
    with forgetting_plugin_modules("fmnist_test_"):
        yield


@pytest.fixture
def folder(tmp_path):
    write_plugin(tmp_path / "plugins", "two", TWO)
    return tmp_path / "plugins"


def statuses(host):
    return {s.name: s.status for s in host.spec_statuses() if s.plugin == "two"}


def test_every_spec_is_listed_with_its_status_reason_and_time(folder):
    host = get_plugin_manager([folder])
    rows = {s.name: s for s in host.spec_statuses()}
    assert statuses(host) == {
        "two_adagrad": "offered",
        "two_nadam": "offered",
        "two_stuck": "refused",
    }
    assert "did not go down" in rows["two_stuck"].reason
    assert rows["two_nadam"].seconds is not None
    assert rows["two_nadam"].label == "NAdam"
    assert rows["two_nadam"].key == "optimizer:two_nadam"
    assert rows["sgd"].status == "offered"  # the built-ins are listed too
    assert rows["cross_entropy"].kind == "loss"


def test_disable_and_enable_one_spec_without_restart(folder):
    host = get_plugin_manager([folder])
    record = host.disable_spec("optimizer", "two_nadam")
    assert record is not None
    assert record.name == "two"
    assert "two_nadam" not in host.optimizers
    assert "two_adagrad" in host.optimizers  # the rest of the plugin stays
    assert record.status == "loaded"
    assert statuses(host)["two_nadam"] == "disabled"
    with pytest.raises(UnknownPluginError, match="disabled; enable it again"):
        host.optimizer("two_nadam")
    host.enable_spec("optimizer", "two_nadam")
    assert "two_nadam" in host.optimizers
    assert statuses(host)["two_nadam"] == "offered"
    assert host.optimizer("two_nadam").plugin == "two"


def test_a_disabled_spec_stays_off_at_the_next_start_and_is_not_self_tested(folder, tmp_path):
    settings = PluginSettings.load(tmp_path / "plugins.json")
    settings.set_spec_enabled("optimizer:two_nadam", False)
    settings.save()
    again = PluginSettings.load(tmp_path / "plugins.json")
    assert again.disabled_specs == {"optimizer:two_nadam"}
    plain = get_plugin_manager([folder], settings=PluginSettings())
    host = get_plugin_manager([folder], settings=again)
    assert "two_nadam" not in host.optimizers
    assert host.records["two"].disabled_specs == ["optimizer:two_nadam"]
    assert host.selftests_run == plain.selftests_run - 1
    host.enable_spec("optimizer", "two_nadam")  # tested now, on demand
    assert host.selftests_run == plain.selftests_run
    assert "two_nadam" in host.optimizers


def test_a_plugin_whose_specs_are_all_disabled_or_refused_stays_loaded(folder):
    host = get_plugin_manager([folder])
    host.disable_spec("optimizer", "two_adagrad")
    host.disable_spec("optimizer", "two_nadam")
    assert host.records["two"].status == "loaded"
    assert not host.records["two"].optimizers
    host.disable("two")
    host.enable("two")  # reloading the plugin honours the single-spec choices
    assert statuses(host) == {
        "two_adagrad": "disabled",
        "two_nadam": "disabled",
        "two_stuck": "refused",
    }


def test_enabling_a_cached_spec_runs_no_self_test(folder, tmp_path):
    cache = tmp_path / "cache.json"
    get_plugin_manager([folder], selftest_cache=SelfTestCache(cache))
    settings = PluginSettings(disabled_specs={"optimizer:two_nadam"})
    host = get_plugin_manager([folder], settings=settings, selftest_cache=SelfTestCache(cache))
    assert host.selftests_run == 0
    host.enable_spec("optimizer", "two_nadam")
    assert host.selftests_run == 0
    assert "two_nadam" in host.optimizers


def test_rescan_forgets_a_package_that_was_uninstalled(tmp_path, monkeypatch):
    site = tmp_path / "site"
    monkeypatch.syspath_prepend(str(site))
    site.mkdir()
    host = get_plugin_manager([tmp_path / "none"])
    info = make_distribution(
        site,
        "fmnist-test-gone",
        entry_points={"gone": "fmnist_test_gone"},
        modules={"fmnist_test_gone": TWO.replace("two_", "gone_")},
    )
    host.rescan()
    assert "gone_nadam" in host.optimizers
    assert host.distribution_of("gone") == "fmnist-test-gone"
    assert host.distribution_of("builtin_optimizers") == ""
    shutil.rmtree(info)  # what pip uninstall removes
    report = host.rescan()
    assert [r.name for r in report.removed] == ["gone"]
    assert "gone" not in host.records
    assert not any(n.startswith("gone_") for n in host.optimizers)
    assert "sgd" in host.optimizers
