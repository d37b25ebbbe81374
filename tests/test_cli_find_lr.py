"""fmnist-train --find-lr: the range test from the command line, training nothing."""

from __future__ import annotations

import re

import torch

from fmnist_gui import checkpoint as ckpt
from fmnist_gui.cli import main
from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.trainer import Trainer
from tests.conftest import run_stopping_after

LINE = re.compile(r"^suggested lr: (\S+) \((\d+) batches; .+\)$")


def test_find_lr_prints_a_sane_suggestion_for_sgd_on_the_real_data(capsys, real_data_root):
    code = main(["--data-dir", str(real_data_root), "--no-download", "--seed", "0", "--find-lr"])
    out, err = capsys.readouterr()
    assert code == 0, err
    match = LINE.match(out.strip())
    assert match, out
    assert 1e-3 <= float(match.group(1)) <= 1.0
    assert "Epoch" not in out  # nothing was trained


def test_find_lr_on_a_checkpoint_leaves_the_file_alone(
    capsys, tmp_path, tiny_root, tiny_data, plugins
):
    trainer = Trainer(TrainConfig(epochs=2, seed=2, batch_size=16), tiny_data, plugins)
    run_stopping_after(trainer, 5)
    path = tmp_path / "ck.pt"
    ckpt.save_checkpoint(path, trainer.state_dict())
    before = path.read_bytes()
    code = main(["--data-dir", str(tiny_root), "--no-download", "--resume", str(path), "--find-lr"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert LINE.match(out.strip()), out
    assert path.read_bytes() == before
    saved = ckpt.read_checkpoint(path)
    assert torch.equal(
        saved["model"]["linear_relu_stack.0.weight"],
        trainer.model.state_dict()["linear_relu_stack.0.weight"],
    )
