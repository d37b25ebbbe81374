"""The window refuses checkpoints and weights files with non-finite weights, saying why."""

from __future__ import annotations

import math

import pytest
import torch

from fmnist_gui import checkpoint as ckpt
from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.trainer import Trainer
from tests.checkpoint.test_checkpoint import rewrite
from tests.conftest import run_stopping_after
from tests.qt.features.test_checkpoints import patch_open_dialog, record

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_open_and_import_show_which_weight_is_not_finite(
    qtbot, app, tmp_path, tiny_data, plugins, monkeypatch
):
    trainer = Trainer(TrainConfig(epochs=1, batch_size=64, seed=4), tiny_data, plugins)
    run_stopping_after(trainer, 2)
    state = trainer.state_dict()
    good = tmp_path / "good.pt"
    ckpt.save_checkpoint(good, state)
    checkpoint = rewrite(
        good, lambda o: o["model"]["linear_relu_stack.0.weight"].__setitem__((5, 5), math.nan)
    )
    weights = tmp_path / "inf_weights.pth"
    model = dict(state["model"])
    model["linear_relu_stack.0.weight"] = torch.zeros(512, 784)
    model["linear_relu_stack.4.weight"] = torch.full((10, 512), math.inf)
    torch.save(model, weights)

    before = app.training.trainer
    warnings = record(monkeypatch, "warning")
    for action, path, title, words in (
        (
            "open",
            checkpoint,
            "Cannot open the checkpoint",
            "weight linear_relu_stack.0.weight holds 1 NaN or infinite value",
        ),
        (
            "import_weights",
            weights,
            "Cannot import the weights",
            "weight linear_relu_stack.4.weight holds 5120 NaN or infinite values",
        ),
    ):
        patch_open_dialog(monkeypatch, path)
        app.window.actions[action].trigger()
        qtbot.waitUntil(lambda: len(warnings) > 0, timeout=30_000)
        (shown,) = warnings
        assert shown[1] == title
        assert shown[2].startswith(f"{path}: {words}"), shown[2]
        warnings.clear()
    assert app.training.trainer is before
