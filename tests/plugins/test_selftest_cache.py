"""The self-test result cache: a warm start runs no self-test; a change runs them again.

Real plugin files and a real installed distribution (``plugin_fixtures``);
the counter is the host's own ``selftests_run``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fmnist_gui.plugins.host import get_plugin_manager
from fmnist_gui.plugins.selftest import SelfTestCache
from fmnist_gui.plugins.specs import Param
from tests.support.plugin_fixtures import (
    forgetting_plugin_modules,
    good_optimizer_source,
    make_distribution,
    write_plugin,
)

BUILTIN_SPECS = 11  # sgd, adam, rmsprop; cross_entropy, nll, mse; five schedules


@pytest.fixture(autouse=True)
def _forget_plugin_modules():
    with forgetting_plugin_modules("fmnist_test_"):
        yield


def _load(folder: Path, cache: Path):
    return get_plugin_manager([folder], selftest_cache=SelfTestCache(cache))


def test_second_start_runs_no_selftest(tmp_path):
    folder, cache = tmp_path / "plugins", tmp_path / "cache.json"
    write_plugin(folder, "my_adagrad", good_optimizer_source())
    first = _load(folder, cache)
    assert first.selftests_run == BUILTIN_SPECS + 1
    assert "my_adagrad" in first.optimizers
    second = _load(folder, cache)
    assert second.selftests_run == 0
    assert second.selftest_cache is not None
    assert second.selftest_cache.hits == BUILTIN_SPECS + 1
    assert set(second.optimizers) == set(first.optimizers)
    assert set(second.losses) == set(first.losses)
    # The times shown in the manager come back from the cache too.
    assert second.records["my_adagrad"].selftest_seconds.keys() == {"my_adagrad"}


def test_warm_start_never_touches_torch_optim_machinery(tmp_path):
    """The first torch.optim step imports torch._dynamo (seconds): a warm start must not."""
    folder, cache = tmp_path / "plugins", tmp_path / "cache.json"
    write_plugin(folder, "my_adagrad", good_optimizer_source())
    _load(folder, cache)
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from fmnist_gui.plugins.host import get_plugin_manager
        from fmnist_gui.plugins.selftest import SelfTestCache
        host = get_plugin_manager([Path({str(folder)!r})],
                                  selftest_cache=SelfTestCache(Path({str(cache)!r})))
        print(host.selftests_run, "torch._dynamo" in sys.modules, sorted(host.optimizers))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    ).stdout.split()
    assert out[:2] == ["0", "False"], out


def test_a_rejected_spec_stays_rejected_with_its_reason(tmp_path):
    folder, cache = tmp_path / "plugins", tmp_path / "cache.json"
    write_plugin(
        folder,
        "stuck",
        """
        import torch
        from fmnist_gui import OptimizerSpec, hookimpl

        def make(params, lr):
            return torch.optim.SGD(params, lr=0.0)

        @hookimpl
        def fmnist_register_optimizers():
            return [OptimizerSpec(name="stuck", label="Stuck", factory=make)]
        """,
    )
    first = _load(folder, cache)
    second = _load(folder, cache)
    assert second.selftests_run == 0
    assert "stuck" not in second.optimizers
    assert second.records["stuck"].error == first.records["stuck"].error
    assert "did not go down" in second.records["stuck"].error


def test_a_changed_file_is_checked_again(tmp_path):
    folder, cache = tmp_path / "plugins", tmp_path / "cache.json"
    path = write_plugin(folder, "my_adagrad", good_optimizer_source())
    _load(folder, cache)
    path.write_text(path.read_text() + "\n# edited\n")
    assert _load(folder, cache).selftests_run == 1


def test_a_changed_spec_is_checked_again(tmp_path):
    """Same plugin identity, different schema (a default changed): a new check."""
    folder, cache = tmp_path / "plugins", tmp_path / "cache.json"
    write_plugin(folder, "my_adagrad", good_optimizer_source())
    host = _load(folder, cache)
    store = SelfTestCache(cache)
    identity = host._code_ids["my_adagrad"]
    spec = host.optimizer("my_adagrad")
    assert store.get(store.key(identity, "optimizer", spec)) is not None
    changed = dataclasses.replace(spec, params=(Param("weight_decay", "float", 0.01, minimum=0),))
    renamed = dataclasses.replace(spec, name="my_adagrad2")
    assert store.get(store.key(identity, "optimizer", changed)) is None
    assert store.get(store.key(identity, "optimizer", renamed)) is None


def test_a_new_distribution_version_is_checked_again(tmp_path, monkeypatch):
    site, cache = tmp_path / "site", tmp_path / "cache.json"
    make_distribution(
        site,
        "fmnist-test-cached",
        version="1.0",
        entry_points={"cached": "fmnist_test_cached"},
        modules={"fmnist_test_cached": good_optimizer_source("cached")},
    )
    monkeypatch.syspath_prepend(str(site))
    assert _load(tmp_path / "none", cache).selftests_run == BUILTIN_SPECS + 1
    assert _load(tmp_path / "none", cache).selftests_run == 0
    shutil.rmtree(site / "fmnist_test_cached-1.0.dist-info")
    make_distribution(
        site,
        "fmnist-test-cached",
        version="1.1",
        entry_points={"cached": "fmnist_test_cached"},
    )
    importlib.invalidate_caches()
    host = _load(tmp_path / "none", cache)
    assert host.records["cached"].version == "1.1"
    assert host.selftests_run == 1


def test_a_damaged_cache_only_costs_a_recheck(tmp_path):
    folder, cache = tmp_path / "plugins", tmp_path / "cache.json"
    cache.write_text("{not json")
    assert _load(folder, cache).selftests_run == BUILTIN_SPECS
    assert json.loads(cache.read_text())["format"] == 1
    assert _load(folder, cache).selftests_run == 0


def test_without_a_cache_every_start_checks(tmp_path):
    folder = tmp_path / "plugins"
    assert get_plugin_manager([folder]).selftests_run == BUILTIN_SPECS
    assert get_plugin_manager([folder]).selftests_run == BUILTIN_SPECS


def test_upgrading_a_wrapped_library_checks_again(tmp_path, monkeypatch):
    """Same plugin version and code, new version of what it requires: a new check."""
    site, cache = tmp_path / "site", tmp_path / "cache.json"
    make_distribution(
        site,
        "fmnist-test-wrapper",
        version="1.0",
        entry_points={"wrapper": "fmnist_test_wrapper"},
        modules={"fmnist_test_wrapper": good_optimizer_source("wrapped")},
        requires=("fmnist-test-wrapped-lib>=1", 'fmnist-test-docs; extra == "docs"'),
    )
    make_distribution(site, "fmnist-test-wrapped-lib", version="1.0", entry_points={})
    monkeypatch.syspath_prepend(str(site))
    first = _load(tmp_path / "none", cache)
    assert "wrapped" in first.optimizers
    assert "fmnist-test-wrapped-lib==1.0" in first._code_ids["wrapper"]
    assert "fmnist-test-docs" not in first._code_ids["wrapper"]  # an extra is not run on
    assert _load(tmp_path / "none", cache).selftests_run == 0
    shutil.rmtree(site / "fmnist_test_wrapped_lib-1.0.dist-info")
    make_distribution(site, "fmnist-test-wrapped-lib", version="1.1", entry_points={})
    importlib.invalidate_caches()
    upgraded = _load(tmp_path / "none", cache)
    assert upgraded.records["wrapper"].version == "1.0"
    assert upgraded.selftests_run == 1
    assert _load(tmp_path / "none", cache).selftests_run == 0
