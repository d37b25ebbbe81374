"""Plugins that exit, interrupt, kill or hang the process: the host survives each.

Real plugin files and real installed distributions (``plugin_fixtures``), real
child processes for the probe; nothing is mocked. The command line's side of
the same faults is in ``test_plugin_faults_cli.py``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fmnist_gui.plugins import safemode
from fmnist_gui.plugins.host import FILE_MODULE_PREFIX, get_plugin_manager
from fmnist_gui.plugins.probe import Prober, cache_path
from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.trainer import BatchEnd, RunEnd, Trainer
from tests.support.plugin_fixtures import (
    forgetting_plugin_modules,
    good_optimizer_source,
    make_distribution,
    write_plugin,
)

# What a plugin may raise that ``except Exception`` does not catch.
BASE_EXCEPTIONS = {
    "SystemExit": ("import sys; sys.exit(3)", "SystemExit: 3 (it called sys.exit()"),
    "KeyboardInterrupt": (
        "raise KeyboardInterrupt",
        "KeyboardInterrupt (raised by the plugin itself, not by Ctrl-C)",
    ),
    "GeneratorExit": ("raise GeneratorExit", "GeneratorExit"),
}

AT_IMPORT = "{statement}\n"

IN_HOOK = """
from fmnist_gui import hookimpl

@hookimpl
def fmnist_register_optimizers():
    {statement}
"""

IN_FACTORY = """
from fmnist_gui import OptimizerSpec, hookimpl

def make(params, lr):
    {statement}

@hookimpl
def fmnist_register_optimizers():
    return [OptimizerSpec("in_factory", "In factory", make)]
"""

# Passes the 8-step self-test, then fails at the third training step.
IN_STEP = """
import torch
from fmnist_gui import OptimizerSpec, hookimpl

class Failing(torch.optim.SGD):
    calls = 0

    def step(self, closure=None):
        type(self).calls += 1
        if type(self).calls > 8 + 2:
            {statement}
        return super().step(closure)

@hookimpl
def fmnist_register_optimizers():
    return [OptimizerSpec("{name}", "In step", lambda params, lr: Failing(params, lr=lr))]
"""

# One call in the self-test, four training batches of tiny data, then the test set.
IN_LOSS = """
import torch
from fmnist_gui import LossSpec, hookimpl

def make():
    calls = [0]
    def loss(pred, y):
        calls[0] += 1
        if calls[0] > 1 + 4:
            {statement}
        return torch.nn.functional.cross_entropy(pred, y)
    return loss

@hookimpl
def fmnist_register_losses():
    return [LossSpec("in_loss", "In loss", make)]
"""


@pytest.fixture(autouse=True)
def _forget_plugin_modules():
    with forgetting_plugin_modules("fmnist_test_"):
        yield


def survive(call):
    """Run ``call``; a BaseException escaping it fails the test instead of stopping pytest."""
    try:
        return call()
    except BaseException as exc:  # noqa: BLE001 - exactly what must not escape
        pytest.fail(f"{type(exc).__name__} escaped from plugin code: {exc!r}")


def source(template: str, statement: str, name: str = "in_step") -> str:
    """``template`` with ``statement`` where plugin code fails (and ``name`` for its spec)."""
    return textwrap.dedent(template).format(statement=statement, name=name)


@pytest.mark.parametrize("exception", BASE_EXCEPTIONS)
def test_exit_and_interrupt_from_plugin_code_are_that_plugins_failure(
    exception, tmp_path, tiny_data
):
    statement, words = BASE_EXCEPTIONS[exception]
    folder = tmp_path / "plugins"
    for name, template in (
        ("at_import", AT_IMPORT),
        ("in_hook", IN_HOOK),
        ("in_factory", IN_FACTORY),
        ("in_step", IN_STEP),
        ("in_loss", IN_LOSS),
    ):
        write_plugin(folder, name, source(template, statement))
    write_plugin(folder, "good", good_optimizer_source())
    host = survive(lambda: get_plugin_manager([folder]))

    records = host.records
    assert records["at_import"].status == "failed"
    assert records["at_import"].error.startswith(f"import failed: {words}")
    assert records["in_hook"].status == "failed"
    assert records["in_hook"].error.startswith(f"fmnist_register_optimizers() raised {words}")
    # The self-test builds the optimizer: a factory that exits fails it.
    assert records["in_factory"].status == "failed"
    assert f"factory raised {words}" in records["in_factory"].error
    # The others load; the built-ins and a good plugin are untouched.
    assert records["in_step"].status == records["in_loss"].status == "loaded"
    assert records["good"].status == "loaded"
    assert {"sgd", "my_adagrad", "in_step"} <= set(host.optimizers)

    def train(**config):
        trainer = Trainer(TrainConfig(epochs=1, seed=0, **config), tiny_data, host)
        return list(trainer.run())

    events = survive(lambda: train(optimizer="in_step"))
    assert sum(isinstance(e, BatchEnd) for e in events) == 2
    assert events[-1].status == "failed"
    assert events[-1].message.startswith(
        f"optimizer 'in_step' (plugin 'in_step') raised during step(): {words}"
    )
    events = survive(lambda: train(loss="in_loss"))
    assert events[-1].status == "failed"
    assert events[-1].message.startswith(
        f"loss 'in_loss' (plugin 'in_loss') raised during testing: {words}"
    )
    # The host still trains with everything else.
    assert survive(lambda: train(optimizer="my_adagrad"))[-1] == RunEnd("finished")


EXITS_IN_STEP = """
import os
import torch
from fmnist_gui import OptimizerSpec, hookimpl

class Exits(torch.optim.SGD):
    def step(self, closure=None):
        os._exit(5)

@hookimpl
def fmnist_register_optimizers():
    return [OptimizerSpec("exits", "Exits", lambda params, lr: Exits(params, lr=lr))]
"""

# Each ends the process in a way no except clause sees.
KILLERS = {
    "at_import": "import os\nos._exit(3)\n",
    "in_hook": source(IN_HOOK, "import os; os._exit(4)"),
    "in_step": EXITS_IN_STEP,  # the self-test steps it
    "by_signal": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
}


def test_plugins_that_end_the_process_are_tried_in_a_child_first(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    for name, text in KILLERS.items():
        write_plugin(folder, name, text)
    write_plugin(folder, "good", good_optimizer_source())
    site = tmp_path / "site"
    make_distribution(
        site,
        "fmnist-test-killer",
        version="1.2",
        entry_points={"killer_package": "fmnist_test_killer"},
        modules={"fmnist_test_killer": "import os\nos._exit(6)\n"},
    )
    monkeypatch.syspath_prepend(str(site))

    host = get_plugin_manager([folder], probe=True)

    how = {
        "at_import": "ended with exit code 3",
        "in_hook": "ended with exit code 4",
        "in_step": "ended with exit code 5",
        "by_signal": "was killed by SIGKILL",
        "killer_package": "ended with exit code 6",
    }
    for name, ending in how.items():
        record = host.records[name]
        assert record.status == "failed", name
        assert record.error.startswith("not loaded: a separate process that imported"), name
        assert ending in record.error, name
    assert host.records["good"].status == "loaded"
    assert "my_adagrad" in host.optimizers
    assert {"sgd", "adam"} <= set(host.optimizers)
    assert host.warnings == []
    # None of them was imported here.
    assert not any(name.startswith("fmnist_test_killer") for name in sys.modules)
    assert f"{FILE_MODULE_PREFIX}at_import" not in sys.modules

    # The verdicts are cached by file hash and by distribution version.
    verdicts = json.loads(cache_path().read_text(encoding="utf-8"))["verdicts"]
    assert verdicts["dist:fmnist-test-killer==1.2"] == {
        "ok": False,
        "reason": "ended with exit code 6",
    }
    good_key = "file:" + host.records["good"].sha256
    assert verdicts[good_key]["ok"] is True
    assert not any(key.startswith("dist:fmnist-gui") for key in verdicts)  # built-ins: never
    # A later start reads them instead of trying again: a verdict written into the
    # cache by hand is what it goes by.
    data = json.loads(cache_path().read_text(encoding="utf-8"))
    data["verdicts"][good_key] = {"ok": False, "reason": "was refused in this test"}
    cache_path().write_text(json.dumps(data), encoding="utf-8")
    again = get_plugin_manager([folder], probe=True)
    assert again.records["good"].status == "failed"
    assert "was refused in this test" in again.records["good"].error
    # A changed file is tried again.
    write_plugin(folder, "good", good_optimizer_source() + "\n# changed\n")
    assert get_plugin_manager([folder], probe=True).records["good"].status == "loaded"


def test_a_plugin_that_hangs_in_the_trial_is_stopped_and_not_loaded(tmp_path):
    folder = tmp_path / "plugins"
    write_plugin(folder, "hangs", "while True:\n    pass\n")
    write_plugin(folder, "good", good_optimizer_source())
    # Long enough for the good plugin's trial on a busy machine (0.1 s on an idle one).
    host = get_plugin_manager([folder], probe=Prober(timeout=10))
    record = host.records["hangs"]
    assert record.status == "failed"
    assert "did not finish within 10 s and was stopped" in record.error
    assert host.records["good"].status == "loaded", host.records["good"].error


DIES_WHILE_LOADING = """
import sys
from fmnist_gui.plugins.host import get_plugin_manager
get_plugin_manager([sys.argv[1]])  # no probe: the plugin runs in this very process
"""


def test_a_start_that_died_while_loading_plugins_offers_safe_mode(tmp_path):
    folder = tmp_path / "plugins"
    write_plugin(folder, "dies", "import os\nos._exit(7)\n")
    write_plugin(folder, "good", good_optimizer_source())
    assert safemode.take_previous_crash() is None

    died = subprocess.run(
        [sys.executable, "-c", DIES_WHILE_LOADING, str(folder)], capture_output=True, timeout=300
    )
    assert died.returncode == 7, died.stderr
    crash = safemode.take_previous_crash()
    assert crash is not None
    assert crash.plugin == "dies"
    assert crash.location == str(folder / "dies.py")
    assert "while loading plugin 'dies'" in crash.message
    assert safemode.take_previous_crash() is None  # asked once

    # Safe mode: the built-ins only; the others are listed, disabled, saying why.
    host = get_plugin_manager([folder], safe_mode=True)
    assert {"sgd", "cross_entropy"} <= {*host.optimizers, *host.losses}
    assert "my_adagrad" not in host.optimizers
    for name in ("dies", "good"):
        assert host.records[name].status == "disabled"
        assert "safe mode" in host.records[name].error
    assert any("safe mode" in w for w in host.warnings)
    assert f"{FILE_MODULE_PREFIX}dies" not in sys.modules

    # A normal start removes its marker: nothing to report afterwards.
    get_plugin_manager([tmp_path / "none"])
    assert safemode.take_previous_crash() is None


def test_a_marker_of_a_running_instance_is_no_crash(tmp_path):
    folder = safemode.marker_folder()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state = {
            "pid": other.pid,
            "host": socket.gethostname(),
            "started": 0.0,
            "plugin": "busy",
            "location": "somewhere",
        }
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{other.pid}.json").write_text(json.dumps(state), encoding="utf-8")
        (folder / "123456789.json").write_text("{torn", encoding="utf-8")
        crash = safemode.take_previous_crash()
        # The torn marker is a death before a plugin was named; the live one is left alone.
        assert crash is not None
        assert crash.plugin == ""
        assert (folder / f"{other.pid}.json").exists()
        assert safemode.take_previous_crash() is None
    finally:
        other.kill()
        other.wait()
    assert safemode.take_previous_crash().plugin == "busy"  # its process is gone now


TRIES_A_HANGING_PLUGIN = """
import sys
from fmnist_gui.plugins.host import get_plugin_manager
from fmnist_gui.plugins.probe import Prober
print("started", flush=True)
get_plugin_manager([sys.argv[1]], probe=Prober(timeout=600))
"""


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its exit status is left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_a_plugin_trial_ends_when_the_app_is_killed(tmp_path):
    folder = tmp_path / "plugins"
    write_plugin(folder, "hangs", "while True:\n    pass\n")
    parent = subprocess.Popen(
        [sys.executable, "-c", TRIES_A_HANGING_PLUGIN, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 120
        while not (trials := _children(parent.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(trials) == 1, "the trial process never started"
        parent.kill()  # as the OOM killer or `kill -9` would
        parent.wait()
        deadline = time.monotonic() + 60
        while _alive(trials[0]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(trials[0]), "the trial outlived the app that started it"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()
