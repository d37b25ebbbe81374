"""``fmnist-train`` with plugins, run as a subprocess the way a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.plugin_fixtures import good_optimizer_source, write_plugin

CLI = [sys.executable, "-m", "fmnist_gui.cli"]

RETURNS_NONE = """
from fmnist_gui import OptimizerSpec, hookimpl
@hookimpl
def fmnist_register_optimizers():
    return [OptimizerSpec("nothing", "Nothing", lambda params, lr: None)]
"""


def run_cli(*args, timeout=180):
    env = dict(os.environ, FMNIST_GUI_SYSTEM_DATASET=os.devnull)
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture
def plugin_dir(tmp_path):
    folder = tmp_path / "plugins"
    write_plugin(folder, "broken", "def oops(:\n")
    write_plugin(folder, "my_adagrad", good_optimizer_source())
    write_plugin(folder, "returns_none", RETURNS_NONE)
    return folder


def test_list_plugins_shows_the_table_and_every_error(plugin_dir):
    result = run_cli("--list-plugins", "--plugin-dir", plugin_dir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["PLUGIN", "SOURCE", "VERSION", "STATUS", "PROVIDES"]
    rows = {line.split()[0]: line for line in lines[1:] if not line.startswith("error")}
    assert "optimizer:sgd" in rows["builtin_optimizers"]
    assert rows["my_adagrad"].split()[1:4] == ["file", "2.5", "loaded"]
    assert "optimizer:my_adagrad" in rows["my_adagrad"]
    assert rows["broken"].split()[3] == "failed"
    errors = [line for line in lines if line.startswith("error in plugin")]
    assert any(
        f"broken ({plugin_dir / 'broken.py'}): import failed: SyntaxError" in line
        for line in errors
    )
    assert any("returns_none" in e and "NoneType, not a torch.optim.Optimizer" in e for e in errors)
    assert result.stderr == ""


def test_trains_with_a_plugin_optimizer_and_its_params(plugin_dir, tiny_root):
    result = run_cli(
        "--plugin-dir",
        plugin_dir,
        "--data-dir",
        tiny_root,
        "--no-download",
        "--epochs",
        1,
        "--optimizer",
        "my_adagrad",
        "--opt-param",
        "weight_decay=0.01",
        "--lr",
        "0.01",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "Epoch 1"
    assert result.stdout.rstrip().endswith("Done!")


BAD_CHOICES = [
    (
        ["--optimizer", "my_adagrad", "--opt-param", "momentum=0.9"],
        "my_adagrad has no parameter 'momentum' (known: weight_decay)",
    ),
    (
        ["--optimizer", "my_adagrad", "--opt-param", "weight_decay=lots"],
        "weight_decay: 'lots' is not a number",
    ),
    (
        ["--optimizer", "my_adagrad", "--opt-param", "weight_decay=-1"],
        "weight_decay: -1 is out of range (0 <= weight_decay)",
    ),
    (["--optimizer", "adam", "--opt-param", "betas"], "'betas' is not KEY=VALUE"),
    (["--optimizer", "lion"], "unknown optimizer 'lion'"),
    (["--optimizer", "nothing"], "optimizer 'nothing' is not offered"),
    (["--loss", "hinge"], "unknown loss 'hinge'"),
]


def test_unknown_plugin_param_is_one_line_and_exit_2(plugin_dir, tiny_root):
    args, words = BAD_CHOICES[0]
    result = run_cli(
        "--plugin-dir", plugin_dir, "--data-dir", tiny_root, "--no-download", "--epochs", 1, *args
    )
    assert result.returncode == 2
    assert result.stderr == f"fmnist-train: error: {words}\n"
    assert result.stdout == ""


# The other cases run main() in-process (the same code path as the console
# script, minus a 5-second interpreter start each).
@pytest.mark.parametrize(("args", "words"), BAD_CHOICES[1:])
def test_bad_plugin_choices_are_one_line_and_exit_2(plugin_dir, tiny_root, capsys, args, words):
    from fmnist_gui.cli import main

    code = main(
        [
            "--plugin-dir",
            str(plugin_dir),
            "--data-dir",
            str(tiny_root),
            "--no-download",
            "--epochs",
            "1",
            *args,
        ]
    )
    out, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1, err
    assert err.startswith("fmnist-train: error: "), err
    assert words in err
    assert out == ""


MANY = """
import torch
from fmnist_gui import OptimizerSpec, hookimpl


def sgd(params, lr):
    return torch.optim.SGD(params, lr=lr)


@hookimpl
def fmnist_register_optimizers():
    good = [OptimizerSpec(f"many_{i}", f"Many number {i}", sgd) for i in range(10)]
    bad = [OptimizerSpec(f"many_bad_{i}", "Bad", lambda params, lr: None) for i in range(2)]
    return good + bad
"""


def test_a_plugin_with_many_specs_lists_them_below_the_table(tmp_path):
    folder = tmp_path / "plugins"
    write_plugin(folder, "many", MANY)
    result = run_cli("--list-plugins", "--plugin-dir", folder)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    row = next(line for line in lines if line.startswith("many "))
    assert "10 optimizers (below)" in row
    assert "many_3" not in row  # the table stays one short line per plugin
    block = lines[lines.index("many offers:") + 1 :]
    assert "  optimizer:many_0  Many number 0" in block[:10]
    assert sum(line.startswith("  optimizer:many_") for line in block[:10]) == 10
    header = next(line for line in lines if line.startswith("error in plugin many"))
    assert header.endswith("2 not offered (self-test failed):")
    reasons = lines[lines.index(header) + 1 : lines.index(header) + 3]
    assert [r.split(":")[0].strip() for r in reasons] == ["many_bad_0", "many_bad_1"]
    assert all("not a torch.optim.Optimizer" in r for r in reasons)
    assert max(len(line) for line in lines) < 200


def test_a_spec_disabled_in_the_app_is_listed_as_such_and_refused(tmp_path, tiny_root, capsys):
    """The CLI honours the manager's per-spec choice (plugins.json), and says why."""
    from fmnist_gui.cli import main
    from fmnist_gui.plugins.installer import PluginSettings

    folder = tmp_path / "plugins"
    write_plugin(folder, "many", MANY)
    settings = PluginSettings.load()  # the test's own data folder (FMNIST_GUI_HOME)
    settings.set_spec_enabled("optimizer:many_3", False)
    settings.save()
    assert main(["--list-plugins", "--plugin-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("many "))
    assert "(1 disabled)" in row
    assert "9 optimizers (below)" in row
    assert "optimizer:many_3 " not in out
    assert "disabled in plugin many (by you" in out
    assert out.rstrip().splitlines()[-1].endswith("optimizer:many_3")
    code = main(
        ["--plugin-dir", str(folder), "--data-dir", str(tiny_root), "--no-download"]
        + ["--epochs", "1", "--optimizer", "many_3"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "'many_3' is disabled; enable it again" in err
