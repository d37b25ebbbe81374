"""``fmnist-train`` against plugins that exit, interrupt, kill or outlive it.

Each runs the real command in a subprocess, with a timeout, so that a
regression that hangs fails the test instead of the suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from fmnist_gui.plugins import safemode
from tests.plugins.test_plugin_faults import (
    AT_IMPORT,
    BASE_EXCEPTIONS,
    EXITS_IN_STEP,
    IN_HOOK,
    IN_STEP,
    source,
)
from tests.support.plugin_fixtures import good_optimizer_source, write_plugin

CLI = [sys.executable, "-m", "fmnist_gui.cli"]
TIMEOUT = 300  # generous on a busy machine; only a hang comes near it


def run_cli(*args, timeout=TIMEOUT):
    env = dict(os.environ, FMNIST_GUI_SYSTEM_DATASET=os.devnull)
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
    )


def train(folder, data, *args):
    """A short run on tiny data with the plugins in ``folder``."""
    return run_cli("--plugin-dir", folder, "--data-dir", data, "--no-download", *args)


def table(stdout: str) -> dict[str, list[str]]:
    """--list-plugins' rows by plugin name."""
    rows = [line.split() for line in stdout.splitlines()[1:] if not line.startswith(("error", "w"))]
    return {row[0]: row for row in rows}


def test_exit_and_interrupt_from_plugins_are_reported_not_obeyed(tmp_path, tiny_root):
    # One folder for every run: its plugins are tried in a separate process once.
    folder = tmp_path / "plugins"
    for name, (statement, _) in BASE_EXCEPTIONS.items():
        write_plugin(folder, f"import_{name.lower()}", source(AT_IMPORT, statement))
        write_plugin(folder, f"hook_{name.lower()}", source(IN_HOOK, statement))
        write_plugin(folder, f"step_{name.lower()}", source(IN_STEP, statement, name.lower()))
    write_plugin(folder, "good", good_optimizer_source())

    listed = run_cli("--list-plugins", "--plugin-dir", folder)
    assert listed.returncode == 0, listed.stderr
    assert "interrupted" not in listed.stderr + listed.stdout
    rows = table(listed.stdout)
    assert rows["good"][3] == rows["builtin_optimizers"][3] == "loaded"
    for name, (_, words) in BASE_EXCEPTIONS.items():
        assert rows[f"step_{name.lower()}"][3] == "loaded"  # it fails later, in training
        for where, message in (("import", "import failed:"), ("hook", "raised")):
            plugin = f"{where}_{name.lower()}"
            assert rows[plugin][3] == "failed", plugin
            line = next(x for x in listed.stdout.splitlines() if f"plugin {plugin} (" in x)
            assert f"{message} {words}" in line, line

    # In step(), during training: exit code 1 and a line naming the plugin,
    # not the plugin's exit code, nor "interrupted".
    for name in ("SystemExit", "KeyboardInterrupt"):
        optimizer = name.lower()
        result = train(folder, tiny_root, "--optimizer", optimizer)
        assert result.returncode == 1, (name, result.stderr)
        assert result.stderr.startswith(
            f"fmnist-train: failed: optimizer '{optimizer}' (plugin 'step_{optimizer}') raised "
            f"during step(): {BASE_EXCEPTIONS[name][1]}"
        ), result.stderr
        assert "Epoch 1" in result.stdout
        assert "Done!" not in result.stdout


def test_plugins_that_end_the_process_are_listed_as_failed(tmp_path, tiny_root):
    folder = tmp_path / "plugins"
    write_plugin(folder, "exits_at_import", "import os\nos._exit(3)\n")
    write_plugin(folder, "exits_in_step", EXITS_IN_STEP)
    write_plugin(folder, "good", good_optimizer_source())

    listed = run_cli("--list-plugins", "--plugin-dir", folder)
    assert listed.returncode == 0, listed.stderr
    rows = table(listed.stdout)
    assert rows["good"][3] == "loaded"
    for name, code in (("exits_at_import", 3), ("exits_in_step", 5)):
        assert rows[name][3] == "failed", name
        line = next(x for x in listed.stdout.splitlines() if f"plugin {name} (" in x)
        assert "not loaded: a separate process" in line, line
        assert f"exit code {code}" in line, line

    # Training with it is refused before it starts, naming it; the others train.
    refused = train(folder, tiny_root, "--optimizer", "exits")
    assert refused.returncode == 2
    assert refused.stderr.startswith("fmnist-train: error: unknown optimizer 'exits'")
    trained = train(folder, tiny_root, "--optimizer", "my_adagrad")
    assert trained.returncode == 0, trained.stderr
    assert trained.stdout.endswith("Done!\n")


STARTS_A_THREAD = """
import threading

# Non-daemon, and never ends: Python joins such threads before it exits.
threading.Thread(target=threading.Event().wait, name="plugin-worker").start()
"""


def test_a_plugins_lingering_thread_does_not_keep_the_cli_alive(tmp_path, tiny_root):
    folder = tmp_path / "plugins"
    write_plugin(folder, "lingers", STARTS_A_THREAD + good_optimizer_source())
    listed = run_cli("--list-plugins", "--plugin-dir", folder)
    assert listed.returncode == 0, listed.stderr
    assert table(listed.stdout)["lingers"][3] == "loaded"
    trained = train(folder, tiny_root, "--optimizer", "my_adagrad")
    assert trained.returncode == 0, trained.stderr
    assert trained.stdout.endswith("Done!\n")  # flushed before the process ended


# Passes the self-test, then blocks inside step() until interrupted, after
# telling the test (through a file) that it is there.
STUCK_IN_STEP = """
import os, time
import torch
from fmnist_gui import OptimizerSpec, hookimpl

class Stuck(torch.optim.SGD):
    calls = 0

    def step(self, closure=None):
        type(self).calls += 1
        if type(self).calls > 8 + 1:
            open(os.environ["FMNIST_TEST_IN_STEP"], "w").close()
            time.sleep(3600)
        return super().step(closure)

@hookimpl
def fmnist_register_optimizers():
    return [OptimizerSpec("stuck", "Stuck", lambda params, lr: Stuck(params, lr=lr))]
"""


@pytest.mark.parametrize("inside_plugin", [False, True], ids=["anywhere", "inside-step"])
def test_a_real_ctrl_c_stops_the_cli(tmp_path, tiny_root, inside_plugin):
    folder = tmp_path / "plugins"
    write_plugin(folder, "stuck", textwrap.dedent(STUCK_IN_STEP))
    in_step = tmp_path / "in-step"
    optimizer = "stuck" if inside_plugin else "sgd"
    env = dict(os.environ, PYTHONUNBUFFERED="1", FMNIST_TEST_IN_STEP=str(in_step))
    args = ["--plugin-dir", folder, "--data-dir", tiny_root, "--no-download"]
    args += ["--epochs", 100000, "--optimizer", optimizer]
    child = subprocess.Popen(
        [*CLI, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        if inside_plugin:
            deadline = time.monotonic() + TIMEOUT
            while not in_step.exists() and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert in_step.exists(), "the optimizer's step() was never reached"
        else:
            first = child.stdout.readline()  # the run has started: "Epoch 1"
            assert first == "Epoch 1\n", first + child.stderr.read()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, err
    assert err.endswith("fmnist-train: interrupted\n"), err
    assert "raised" not in err  # not blamed on the plugin whose code was running


DIES_WHILE_LOADING = """
import sys
from fmnist_gui.plugins.host import get_plugin_manager
get_plugin_manager([sys.argv[1]])  # no trial process: the plugin runs right here
"""


def test_after_a_start_died_loading_plugins_the_cli_points_to_safe_mode(tmp_path):
    folder = tmp_path / "plugins"
    write_plugin(folder, "dies", "import os\nos._exit(7)\n")
    died = subprocess.run(
        [sys.executable, "-c", DIES_WHILE_LOADING, str(folder)],
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert died.returncode == 7

    hinted = run_cli("--list-plugins", "--plugin-dir", folder)
    assert hinted.returncode == 0
    assert hinted.stderr.startswith("fmnist-train: The start at ")
    assert f"while loading plugin 'dies' ({folder / 'dies.py'})" in hinted.stderr
    assert "--safe-mode" in hinted.stderr
    assert hinted.stderr.count("\n") == 1

    safe = run_cli("--list-plugins", "--plugin-dir", folder, "--safe-mode")
    assert safe.returncode == 0
    assert safe.stderr == ""
    rows = table(safe.stdout)
    assert rows["builtin_optimizers"][3] == "loaded"
    assert rows["dies"][3] == "disabled"
    assert "warning: safe mode" in safe.stdout
    assert safemode.take_previous_crash() is None


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_a_plugin_dir_that_is_not_a_folder_is_an_error(tmp_path, tiny_root, kind, capsys):
    path = tmp_path / "plugins"
    if kind == "a file":
        path.write_text("not a folder", encoding="utf-8")
        from fmnist_gui.cli import main  # in-process: the same code, minus a start

        code = main(["--plugin-dir", str(path), "--data-dir", str(tiny_root)])
        out, err = capsys.readouterr()
        assert (code, out) == (2, "")
        assert err == f"fmnist-train: error: --plugin-dir {path}: is not a folder\n"
        return
    result = run_cli("--plugin-dir", path, "--data-dir", tiny_root, "--list-plugins")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"fmnist-train: error: --plugin-dir {path}: no such folder\n"
