"""The plugin host: discovery, isolation of broken plugins, self-test, trust, rescans.

Every plugin here is a real file on disk or a real installed distribution
(``plugin_fixtures.make_distribution``); pluggy and importlib run for real.
"""

from __future__ import annotations

import sys

import pytest
import torch

from fmnist_gui.plugins import host as plugin_manager
from fmnist_gui.plugins.host import (
    PluginHost,
    UnknownPluginError,
    get_plugin_manager,
)
from fmnist_gui.plugins.installer import PluginSettings
from fmnist_gui.system.paths import user_plugin_dir
from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.events import BatchEnd, RunEnd
from fmnist_gui.training.trainer import Trainer
from tests.support.plugin_fixtures import (
    forgetting_plugin_modules,
    good_optimizer_source,
    make_distribution,
    write_plugin,
)

BUILTIN_OPTIMIZERS = {"sgd", "adam", "rmsprop"}
BUILTIN_LOSSES = {"cross_entropy", "nll", "mse"}


@pytest.fixture(autouse=True)
def _forget_plugin_modules():
    """Plugin modules imported by a test must not leak into the next one."""
    with forgetting_plugin_modules("fmnist_test_"):
        yield


def host_with(tmp_path, **files: str):
    folder = tmp_path / "plugins"
    for name, source in files.items():
        write_plugin(folder, name, source)
    return get_plugin_manager([folder])


def assert_builtins_work(host):
    assert set(host.optimizers) >= BUILTIN_OPTIMIZERS
    assert set(host.losses) >= BUILTIN_LOSSES
    assert host.records["builtin_optimizers"].status == "loaded"


# ----- the built-ins ------------------------------------------------------------
def test_builtins_come_through_the_entry_point_group_and_pass_the_self_test(plugins):
    assert_builtins_work(plugins)
    record = plugins.records["builtin_optimizers"]
    assert record.source == "built-in"
    assert record.error == ""
    assert record.rejected == {}
    assert set(record.selftest_seconds) == BUILTIN_OPTIMIZERS
    assert plugins.optimizer("sgd").plugin == "builtin_optimizers"


def test_unknown_name_lists_the_installed_ones(plugins):
    with pytest.raises(UnknownPluginError, match=r"unknown optimizer 'lion'.*adam.*sgd"):
        plugins.optimizer("lion")


# ----- reliability: each broken plugin is isolated --------------------------------
def test_file_with_syntax_error_is_isolated(tmp_path):
    host = host_with(tmp_path, broken="def oops(:\n", good=good_optimizer_source())
    record = host.records["broken"]
    assert record.status == "failed"
    assert record.source == "file"
    assert "SyntaxError" in record.error
    assert "broken.py" in record.traceback
    assert "SyntaxError" in record.traceback
    assert host.records["good"].status == "loaded"
    assert "my_adagrad" in host.optimizers
    assert_builtins_work(host)


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        ("raise RuntimeError('no GPU driver')", "RuntimeError: no GPU driver"),
        ("import fmnist_test_not_installed", "ModuleNotFoundError"),
        ("raise SystemExit(3)", "SystemExit"),
    ],
)
def test_plugin_raising_on_import_is_isolated(tmp_path, statement, error):
    host = host_with(tmp_path, raises=statement + "\n", good=good_optimizer_source())
    record = host.records["raises"]
    assert record.status == "failed"
    assert error in record.error
    assert "Traceback" in record.traceback
    assert "my_adagrad" in host.optimizers
    assert_builtins_work(host)


def test_hook_with_wrong_argument_name_is_rejected_by_pluggy(tmp_path):
    source = """
        from fmnist_gui import hookimpl
        @hookimpl
        def fmnist_register_optimizers(model):
            raise AssertionError("never called")
    """
    host = host_with(tmp_path, wrong_arg=source, good=good_optimizer_source())
    record = host.records["wrong_arg"]
    assert record.status == "failed"
    assert record.error.startswith("bad hook implementation")
    assert "model" in record.error
    assert "PluginValidationError" in record.traceback
    assert host.pm.get_plugin("wrong_arg") is None
    assert "my_adagrad" in host.optimizers
    assert_builtins_work(host)


def test_unknown_hook_name_is_caught_by_check_pending(tmp_path):
    source = """
        from fmnist_gui import hookimpl
        @hookimpl
        def fmnist_register_optimisers():  # British spelling: no such hook
            return []
    """
    host = host_with(tmp_path, typo=source, good=good_optimizer_source())
    record = host.records["typo"]
    assert record.status == "failed"
    assert "fmnist_register_optimisers" in record.error
    assert host.pm.get_plugin("typo") is None
    # check_pending() passes again for the plugins that stayed.
    host.pm.check_pending()
    assert "my_adagrad" in host.optimizers


def test_plugin_without_hookimpl_marker_says_how_to_fix_it(tmp_path):
    source = good_optimizer_source().replace("@hookimpl\n", "")
    host = host_with(tmp_path, unmarked=source)
    record = host.records["unmarked"]
    assert record.status == "failed"
    assert "@hookimpl" in record.error


def test_duplicate_optimizer_name_is_refused_and_the_first_kept(tmp_path):
    host = host_with(
        tmp_path,
        impostor=good_optimizer_source(name="sgd", cls="Adagrad"),
        good=good_optimizer_source(),
    )
    record = host.records["impostor"]
    assert record.status == "failed"
    assert "'sgd' is already registered by plugin 'builtin_optimizers'" in record.error
    assert host.optimizer("sgd").plugin == "builtin_optimizers"
    assert host.pm.get_plugin("impostor") is None
    assert "my_adagrad" in host.optimizers


def test_duplicate_name_within_one_plugin_is_refused(tmp_path):
    source = """
        import torch
        from fmnist_gui import OptimizerSpec, hookimpl
        def make(params, lr):
            return torch.optim.SGD(params, lr=lr)
        @hookimpl
        def fmnist_register_optimizers():
            return [OptimizerSpec("twice", "A", make), OptimizerSpec("twice", "B", make)]
    """
    host = host_with(tmp_path, twice=source)
    assert host.records["twice"].status == "failed"
    assert "twice" not in host.optimizers


def test_duplicate_plugin_name_from_two_folders(tmp_path):
    a = write_plugin(tmp_path / "a", "same", good_optimizer_source("opt_a"))
    b = write_plugin(tmp_path / "b", "same", good_optimizer_source("opt_b"))
    host = get_plugin_manager([a.parent, b.parent])
    assert host.records["same"].status == "loaded"
    clash = host.records[f"same ({b})"]
    assert clash.status == "failed"
    assert "already loaded" in clash.error
    assert "opt_a" in host.optimizers
    assert "opt_b" not in host.optimizers
    # Removing the clashing copy leaves the loaded one registered and offered.
    host.remove(f"same ({b})")
    assert host.pm.get_plugin("same") is not None
    assert "opt_a" in host.optimizers


@pytest.mark.parametrize("returned", ["None", "[object()]", "{'not': 'a list'}"])
def test_hook_returning_garbage_is_isolated(tmp_path, returned):
    source = f"""
        from fmnist_gui import hookimpl
        @hookimpl
        def fmnist_register_optimizers():
            return {returned}
    """
    host = host_with(tmp_path, garbage=source)
    assert host.records["garbage"].status == "failed"
    assert "fmnist_register_optimizers()" in host.records["garbage"].error
    assert_builtins_work(host)


def test_hook_raising_is_isolated(tmp_path):
    source = """
        from fmnist_gui import OptimizerSpec, hookimpl
        @hookimpl
        def fmnist_register_optimizers():
            return [OptimizerSpec(name="Bad Name", label="x", factory=print)]
    """
    host = host_with(tmp_path, badspec=source)
    record = host.records["badspec"]
    assert record.status == "failed"
    assert "lower_snake_case" in record.error
    assert_builtins_work(host)


# ----- entry points (installed distributions) ---------------------------------------
def test_entry_point_plugin_is_found_and_trains(tmp_path, monkeypatch, tiny_data):
    site = tmp_path / "site"
    make_distribution(
        site,
        "fmnist-test-adagrad",
        version="3.1",
        entry_points={"adagrad": "fmnist_test_adagrad"},
        modules={"fmnist_test_adagrad": good_optimizer_source("adagrad")},
    )
    monkeypatch.syspath_prepend(str(site))
    host = get_plugin_manager([tmp_path / "none"])
    record = host.records["adagrad"]
    assert (record.status, record.source, record.version) == ("loaded", "package", "3.1")
    assert "fmnist-test-adagrad" in record.location
    trainer = Trainer(TrainConfig(epochs=1, optimizer="adagrad", seed=1), tiny_data, host)
    events = list(trainer.run())
    assert events[-1] == RunEnd("finished")


def test_entry_point_whose_module_is_missing_is_isolated(tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_distribution(site, "fmnist-test-ghost", entry_points={"ghost": "fmnist_test_ghost"})
    make_distribution(
        site,
        "fmnist-test-fine",
        entry_points={"fine": "fmnist_test_fine"},
        modules={"fmnist_test_fine": good_optimizer_source("fine_opt")},
    )
    monkeypatch.syspath_prepend(str(site))
    host = get_plugin_manager([tmp_path / "none"])
    record = host.records["ghost"]
    assert record.status == "failed"
    assert record.source == "package"
    assert "ModuleNotFoundError" in record.error
    assert "fmnist_test_ghost" in record.error
    assert "fmnist-test-ghost" in record.location
    assert "fine_opt" in host.optimizers
    assert_builtins_work(host)


def test_entry_point_name_clash_between_distributions(tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_distribution(
        site,
        "fmnist-test-one",
        entry_points={"optimizers": "fmnist_test_one"},
        modules={"fmnist_test_one": good_optimizer_source("one")},
    )
    make_distribution(
        site,
        "fmnist-test-two",
        entry_points={"optimizers": "fmnist_test_two"},
        modules={"fmnist_test_two": good_optimizer_source("two")},
    )
    monkeypatch.syspath_prepend(str(site))
    host = get_plugin_manager([tmp_path / "none"])
    assert host.records["optimizers"].status == "loaded"
    clashes = [r for k, r in host.records.items() if k.startswith("optimizers (")]
    assert len(clashes) == 1
    assert "already loaded" in clashes[0].error
    assert ("one" in host.optimizers) != ("two" in host.optimizers)


def test_rescan_finds_a_package_installed_after_start(tmp_path, monkeypatch):
    site = tmp_path / "site"
    monkeypatch.syspath_prepend(str(site))
    site.mkdir()
    host = get_plugin_manager([tmp_path / "none"])
    assert "late" not in host.records
    make_distribution(
        site,
        "fmnist-test-late",
        entry_points={"late": "fmnist_test_late"},
        modules={"fmnist_test_late": good_optimizer_source("late_opt")},
    )
    report = host.rescan()
    assert [r.name for r in report.loaded] == ["late"]
    assert "late_opt" in host.optimizers
    assert host.rescan().loaded == []  # nothing new the second time


def test_rescan_reads_new_pth_files(tmp_path, monkeypatch):
    """An editable or namespace install adds a .pth file: its folder must become importable."""
    site, elsewhere = tmp_path / "site-packages", tmp_path / "project"
    site.mkdir()
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(plugin_manager, "_site_dirs", lambda: [str(site)])
    monkeypatch.syspath_prepend(str(site))
    host = get_plugin_manager([tmp_path / "none"])
    make_distribution(
        elsewhere,
        "fmnist-test-editable",
        entry_points={"editable": "fmnist_test_editable"},
        modules={"fmnist_test_editable": good_optimizer_source("edit_opt")},
    )
    (site / "fmnist_test_editable.pth").write_text(f"{elsewhere}\n", encoding="utf-8")
    report = host.rescan()
    assert str(elsewhere) in report.new_paths
    assert "edit_opt" in host.optimizers


def test_rescan_retries_a_failed_entry_point_and_flags_upgrades(tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = make_distribution(
        site,
        "fmnist-test-needy",
        entry_points={"needy": "fmnist_test_needy"},
        modules={
            "fmnist_test_needy": "import fmnist_test_dep\n" + good_optimizer_source("needy_opt")
        },
    )
    monkeypatch.syspath_prepend(str(site))
    host = get_plugin_manager([tmp_path / "none"])
    assert host.records["needy"].status == "failed"
    (site / "fmnist_test_dep.py").write_text("", encoding="utf-8")  # "pip install" the dep
    report = host.rescan()
    assert host.records["needy"].status == "loaded"
    assert "needy_opt" in host.optimizers
    assert report.loaded

    # An upgrade of loaded code cannot be applied in-process: say so.
    new_info = info.with_name("fmnist_test_needy-2.0.dist-info")
    info.rename(new_info)
    (new_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fmnist-test-needy\nVersion: 2.0\n", encoding="utf-8"
    )
    report = host.rescan()
    assert len(report.restart_needed) == 1
    assert "1.0 to 2.0" in report.restart_needed[0]
    assert "restart" in report.restart_needed[0]


# ----- self-test -------------------------------------------------------------------
def _optimizer_plugin(factory_body: str, name: str = "suspect", extra: str = "") -> str:
    return f"""
import torch
from fmnist_gui import OptimizerSpec, hookimpl
{extra}
def make(params, lr):
{factory_body}
def make_good(params, lr):
    return torch.optim.SGD(params, lr=lr)
@hookimpl
def fmnist_register_optimizers():
    return [OptimizerSpec("{name}", "Suspect", make), OptimizerSpec("ok_{name}", "Ok", make_good)]
"""


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("    return None", "returned NoneType, not a torch.optim.Optimizer"),
        ("    raise ValueError('needs a closure')", "factory raised ValueError: needs a closure"),
        ("    return torch.optim.SGD(params, lr=1e6)", "diverged"),
        (
            "    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)",
            "did not go down",
        ),
        ("    return Broken(params, {'lr': lr})", "step 1 of 8 raised RuntimeError: boom"),
    ],
)
def test_self_test_flags_bad_optimizers_and_keeps_the_rest(tmp_path, body, reason):
    extra = """
class Broken(torch.optim.Optimizer):
    def step(self, closure=None):
        raise RuntimeError("boom")
"""
    host = host_with(tmp_path, suspect=_optimizer_plugin(body, extra=extra))
    record = host.records["suspect"]
    assert record.status == "loaded"  # its other optimizer passed
    assert reason in record.rejected["suspect"]
    assert reason in record.error
    assert "suspect" not in host.optimizers
    assert "ok_suspect" in host.optimizers
    with pytest.raises(UnknownPluginError, match="not offered.*" + reason.split()[0]):
        host.optimizer("suspect")


def test_plugin_whose_only_optimizer_fails_the_self_test_is_failed(tmp_path):
    source = """
        from fmnist_gui import OptimizerSpec, hookimpl
        @hookimpl
        def fmnist_register_optimizers():
            return [OptimizerSpec("nothing", "Nothing", lambda params, lr: None)]
    """
    host = host_with(tmp_path, nothing=source)
    record = host.records["nothing"]
    assert record.status == "failed"
    assert "self-test failed" in record.error
    assert "NoneType" in record.error


def test_self_test_flags_a_loss_returning_a_vector(tmp_path):
    source = """
        import torch.nn.functional as F
        from fmnist_gui import LossSpec, hookimpl
        def per_sample(logits, y):
            return F.cross_entropy(logits, y, reduction="none")
        @hookimpl
        def fmnist_register_losses():
            return [LossSpec("per_sample", "Per sample", lambda: per_sample)]
    """
    host = host_with(tmp_path, vector_loss=source)
    assert "not a scalar tensor" in host.records["vector_loss"].error
    assert "per_sample" not in host.losses


def test_self_test_leaves_the_global_random_stream_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    get_plugin_manager([tmp_path / "none"])
    assert torch.equal(torch.rand(3), expected)


# ----- training with a plugin that fails mid-way -----------------------------------------
STEP_RAISES = """
import torch
from fmnist_gui import OptimizerSpec, hookimpl

class FlakySGD(torch.optim.SGD):
    calls = 0
    def step(self, closure=None):
        type(self).calls += 1
        if type(self).calls > 8 + 2:  # passes the 8-step self-test, then 2 training steps
            raise FloatingPointError("flaky kernel")
        return super().step(closure)

@hookimpl
def fmnist_register_optimizers():
    return [OptimizerSpec("flaky", "Flaky", lambda params, lr: FlakySGD(params, lr=lr))]
"""


def test_optimizer_raising_mid_training_stops_with_the_plugin_named(tmp_path, tiny_data):
    host = host_with(tmp_path, flaky=STEP_RAISES)
    assert host.records["flaky"].status == "loaded"
    trainer = Trainer(TrainConfig(epochs=1, optimizer="flaky", seed=0), tiny_data, host)
    last_good = None
    events = []
    for event in trainer.run():
        events.append(event)
        if isinstance(event, BatchEnd):
            last_good = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    end = events[-1]
    assert end.status == "failed"
    assert "flaky" in end.message
    assert "FloatingPointError: flaky kernel" in end.message
    assert sum(isinstance(e, BatchEnd) for e in events) == 2
    # The model is as of the last good step (the failing step changed nothing).
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, last_good[key])
    # The host and the app keep working: another optimizer trains fine.
    again = Trainer(TrainConfig(epochs=1, optimizer="sgd", seed=0), tiny_data, host)
    assert list(again.run())[-1] == RunEnd("finished")


# ----- plugin folders --------------------------------------------------------------------
def test_missing_plugin_folder_is_no_error(tmp_path):
    host = get_plugin_manager([tmp_path / "does" / "not" / "exist"])
    assert host.warnings == []
    assert host.errors == []
    assert_builtins_work(host)


def test_unreadable_plugin_folder_is_a_warning_not_a_crash(tmp_path):
    not_a_folder = tmp_path / "plugins"
    not_a_folder.write_text("a file where the folder should be")
    host = get_plugin_manager([not_a_folder])
    assert len(host.warnings) == 1
    assert str(not_a_folder) in host.warnings[0]
    assert_builtins_work(host)


@pytest.mark.skipif(
    not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
    reason="root reads any folder",
)
def test_permission_denied_plugin_folder(tmp_path):
    folder = tmp_path / "plugins"
    write_plugin(folder, "good", good_optimizer_source())
    folder.chmod(0)
    try:
        host = get_plugin_manager([folder])
    finally:
        folder.chmod(0o755)
    assert "cannot be read" in host.warnings[0]
    assert_builtins_work(host)


# ----- user choices: disabled plugins, approved files ------------------------------------
def test_disabled_plugin_is_not_imported(tmp_path):
    marker = tmp_path / "imported"
    source = f"open({str(marker)!r}, 'w').close()\n" + good_optimizer_source()
    folder = tmp_path / "plugins"
    write_plugin(folder, "quiet", source)
    settings = PluginSettings(disabled={"quiet", "builtin_losses"})
    host = get_plugin_manager([folder], settings=settings)
    assert host.records["quiet"].status == "disabled"
    assert host.records["builtin_losses"].status == "disabled"
    assert not marker.exists()
    assert host.losses == {}
    assert "my_adagrad" not in host.optimizers


def test_enable_and_disable_without_restart(tmp_path):
    host = host_with(tmp_path, good=good_optimizer_source())
    host.disable("good")
    assert "my_adagrad" not in host.optimizers
    assert host.records["good"].status == "disabled"
    host.disable("builtin_optimizers")  # built-ins can be disabled too
    assert not BUILTIN_OPTIMIZERS & set(host.optimizers)
    host.enable("good")
    host.enable("builtin_optimizers")
    assert {"my_adagrad", *BUILTIN_OPTIMIZERS} <= set(host.optimizers)
    assert host.records["good"].status == "loaded"


def test_user_plugin_folder_runs_only_approved_files(tmp_path):
    marker = tmp_path / "imported"
    source = f"with open({str(marker)!r}, 'a') as f:\n    f.write('x')\n" + good_optimizer_source()
    path = write_plugin(user_plugin_dir(), "mine", source)
    host = get_plugin_manager()
    record = host.records["mine"]
    assert record.status == "untrusted"
    assert "not approved" in record.error
    assert not marker.exists()
    assert "my_adagrad" not in host.optimizers
    # Disabling and enabling is no back door around approval.
    host.disable("mine")
    host.enable("mine")
    assert host.records["mine"].status == "untrusted"
    assert not marker.exists()

    host.approve("mine", record.sha256)
    assert host.records["mine"].status == "loaded"
    assert "my_adagrad" in host.optimizers
    assert marker.read_text() == "x"

    # The file changes: the next start asks again instead of running it.
    path.write_text(source + "\n# changed\n", encoding="utf-8")
    host = get_plugin_manager(settings=PluginSettings(trusted_files={"mine.py": record.sha256}))
    assert host.records["mine"].status == "untrusted"
    assert "changed since you approved it" in host.records["mine"].error
    assert marker.read_text() == "x"


def test_remove_forgets_the_plugin(tmp_path):
    host = host_with(tmp_path, good=good_optimizer_source())
    host.remove("good")
    assert "good" not in host.records
    assert "my_adagrad" not in host.optimizers
    assert host.pm.get_plugin("good") is None


def test_load_plugin_registers_an_imported_module(tmp_path):
    module = type(sys)("fmnist_test_inline")
    exec(compile(good_optimizer_source("inline_opt"), "inline", "exec"), module.__dict__)
    host = PluginHost()
    record = host.load_plugin(module, "inline")
    assert record.status == "loaded"
    assert host.optimizers["inline_opt"].plugin == "inline"
