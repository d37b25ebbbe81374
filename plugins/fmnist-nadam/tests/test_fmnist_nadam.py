"""How a plugin author tests a plugin: load it into a fresh host, self-test, train briefly."""

import fmnist_nadam
import pytest

from fmnist_gui.plugins.host import PluginHost
from fmnist_gui.plugins.selftest import check_optimizer


@pytest.fixture
def host():
    host = PluginHost()  # a fresh host: no other plugins, self-test on
    host.load_plugin(fmnist_nadam, "nadam")
    return host


def test_plugin_loads_and_offers_both_optimizers(host):
    record = host.records["nadam"]
    assert record.status == "loaded", record.error
    assert record.optimizers == ["nadam", "radam"]


@pytest.mark.parametrize("name", ["nadam", "radam"])
def test_optimizer_passes_the_self_test(host, name):
    result = check_optimizer(host.optimizer(name))
    assert result.ok, result.reason


def test_schema_parses_cli_values(host):
    values = host.optimizer("nadam").parse_assignments(["momentum_decay=0.01", "betas=0.8,0.9"])
    assert values == {"momentum_decay": 0.01, "betas": (0.8, 0.9)}
    result = check_optimizer(host.optimizer("nadam"), values)
    assert result.ok, result.reason
