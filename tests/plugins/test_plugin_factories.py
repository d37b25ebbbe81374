"""Plugin code that runs after the self-test: factories with other settings, state_dict().

A factory may pass the self-test (default settings) and still exit or raise
for the settings a user picks; an optimizer may override ``state_dict()`` or
``load_state_dict()``, which only checkpoints call. Each is that plugin's
failure, with a message naming it, in the engine and on the command line.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from fmnist_gui import checkpoint as ckpt
from fmnist_gui.plugins.boundary import PluginFailure
from fmnist_gui.plugins.host import get_plugin_manager
from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.trainer import Trainer
from tests.conftest import run_stopping_after
from tests.plugins.test_plugin_faults import (  # noqa: F401 - the fixture is autouse
    BASE_EXCEPTIONS,
    _forget_plugin_modules,
    source,
    survive,
)
from tests.support.plugin_fixtures import write_plugin

# The self-test builds both with their defaults (lr 1e-3, scale 1): they pass it.
PICKY = """
import torch
from fmnist_gui import LossSpec, OptimizerSpec, Param, hookimpl

def make_optimizer(params, lr):
    if lr > 0.5:
        {statement}
    return torch.optim.SGD(params, lr=lr)

def make_loss(scale):
    if scale > 1:
        {statement}
    return torch.nn.CrossEntropyLoss()

@hookimpl
def fmnist_register_optimizers():
    return [OptimizerSpec("picky", "Picky", make_optimizer)]

@hookimpl
def fmnist_register_losses():
    return [LossSpec("picky_loss", "Picky loss", make_loss,
                     params=(Param("scale", "float", 1.0, minimum=0),))]
"""

# state_dict() fails at a high learning rate; load_state_dict() always does.
GRUMPY = """
import torch
from fmnist_gui import OptimizerSpec, hookimpl

class Grumpy(torch.optim.SGD):
    def state_dict(self):
        if self.param_groups[0]["lr"] > 0.5:
            {statement}
        return super().state_dict()

    def load_state_dict(self, state_dict):
        {statement}

@hookimpl
def fmnist_register_optimizers():
    return [OptimizerSpec("grumpy", "Grumpy", lambda params, lr: Grumpy(params, lr=lr))]
"""


def contained(call):
    """Run ``call``: an Exception passes, anything else escaping it fails the test."""
    try:
        return call()
    except Exception:
        raise
    except BaseException as exc:  # noqa: BLE001 - exactly what must not escape
        pytest.fail(f"{type(exc).__name__} escaped from plugin code: {exc!r}")


def config(**settings) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "batch_size": 64, "seed": 3, **settings})


@pytest.mark.parametrize("exception", BASE_EXCEPTIONS)
def test_a_factory_that_exits_for_some_settings_is_the_plugins_failure(
    exception, tmp_path, tiny_data
):
    statement, words = BASE_EXCEPTIONS[exception]
    folder = tmp_path / "plugins"
    write_plugin(folder, "picky_plugin", source(PICKY, statement))
    host = survive(lambda: get_plugin_manager([folder]))
    assert host.records["picky_plugin"].status == "loaded"  # passed the self-test

    Trainer(config(optimizer="picky", loss="picky_loss", lr=0.1), tiny_data, host)
    for settings, what in (
        ({"optimizer": "picky", "lr": 0.7}, "optimizer 'picky'"),
        ({"loss": "picky_loss", "loss_params": {"scale": 2.0}}, "loss 'picky_loss'"),
    ):
        with pytest.raises(PluginFailure) as failure:
            contained(lambda s=settings: Trainer(config(**s), tiny_data, host))
        assert failure.value.plugin == "picky_plugin"
        assert str(failure.value).startswith(
            f"{what} (plugin 'picky_plugin') failed to build: {words}"
        ), str(failure.value)


@pytest.mark.parametrize("exception", BASE_EXCEPTIONS)
def test_state_dict_and_load_state_dict_of_a_plugin_are_its_failure(exception, tmp_path, tiny_data):
    statement, words = BASE_EXCEPTIONS[exception]
    folder = tmp_path / "plugins"
    write_plugin(folder, "grumpy_plugin", source(GRUMPY, statement))
    host = survive(lambda: get_plugin_manager([folder]))

    high = Trainer(config(optimizer="grumpy", lr=0.7), tiny_data, host)
    with pytest.raises(PluginFailure) as failure:
        contained(high.state_dict)
    assert failure.value.plugin == "grumpy_plugin"
    assert str(failure.value).startswith(
        f"optimizer 'grumpy' (plugin 'grumpy_plugin') raised during state_dict(): {words}"
    )

    low = Trainer(config(optimizer="grumpy", lr=0.1), tiny_data, host)
    run_stopping_after(low, 2)
    path = tmp_path / "grumpy.pt"
    ckpt.save_checkpoint(path, low.state_dict())
    with pytest.raises(ckpt.CheckpointError) as refused:
        contained(lambda: ckpt.load_trainer(path, tiny_data, host))
    assert (
        f"{path}: cannot continue its training: optimizer 'grumpy' (plugin 'grumpy_plugin') "
        f"raised during load_state_dict(): {words}"
    ) in str(refused.value)


def test_the_command_line_names_the_plugin_instead_of_exiting_with_its_code(tmp_path, tiny_root):
    statement, _ = BASE_EXCEPTIONS["SystemExit"]
    folder = tmp_path / "plugins"
    write_plugin(folder, "picky_plugin", source(PICKY, statement))
    for args, what in (
        (["--optimizer", "picky", "--lr", "0.7"], "optimizer 'picky'"),
        (["--loss", "picky_loss", "--loss-param", "scale=2"], "loss 'picky_loss'"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "fmnist_gui.cli", "--plugin-dir", str(folder)]
            + ["--data-dir", str(tiny_root), "--no-download", *args],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 2, result.stderr  # not the plugin's 3
        assert result.stderr == (
            f"fmnist-train: error: {what} (plugin 'picky_plugin') failed to build: SystemExit: 3 "
            "(it called sys.exit(); a plugin must raise an exception instead)\n"
        )
