"""fmnist-train as a user runs it: a subprocess, its printed lines and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from tests.support import tutorial_reference as tut

CLI = [sys.executable, "-m", "fmnist_gui.cli"]


def run_cli(*args, timeout=120):
    env = dict(os.environ)
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_prints_the_tutorials_lines_exactly(tiny_root):
    result = run_cli(
        "--data-dir",
        tiny_root,
        "--epochs",
        2,
        "--batch-size",
        2,
        "--lr",
        0.01,
        "--seed",
        3,
        "--no-download",
    )
    assert result.returncode == 0, result.stderr

    torch.manual_seed(3)
    train_dl, test_dl = tut.make_loaders(str(tiny_root), 2)
    model = tut.NeuralNetwork()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    lines = []
    for t in range(2):
        lines.append(f"Epoch {t + 1}\n-------------------------------")
        tut.train_loop(train_dl, model, nn.CrossEntropyLoss(), optimizer, print_fn=lines.append)
        tut.test_loop(test_dl, model, nn.CrossEntropyLoss(), print_fn=lines.append)
    lines.append("Done!")
    assert result.stdout == "\n".join(lines) + "\n"
    assert "loss: " in result.stdout
    assert "[  200/  256]" in result.stdout


def test_metrics_json_lines(tiny_root, tmp_path, capsys):
    from fmnist_gui.cli import main

    out = tmp_path / "m.jsonl"
    assert (
        main(
            [
                "--data-dir",
                str(tiny_root),
                "--epochs",
                "2",
                "--seed",
                "0",
                "--no-download",
                "--metrics-json",
                str(out),
                "--optimizer",
                "adam",
                "--opt-param",
                "betas=0.8,0.9",
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in (
        "train_loss",
        "test_loss",
        "test_accuracy",
        "train_seconds",
        "test_seconds",
        "samples_per_second",
    ):
        assert all(isinstance(r[key], float) for r in rows), key
    assert capsys.readouterr().out.endswith("Done!\n")


def test_metrics_file_is_untouched_by_a_usage_error(tiny_root, tmp_path, capsys):
    from fmnist_gui.cli import main

    out = tmp_path / "m.jsonl"
    out.write_text("previous run\n")
    assert (
        main(
            [
                "--data-dir",
                str(tiny_root),
                "--no-download",
                "--metrics-json",
                str(out),
                "--opt-param",
                "nesterov=true",
            ]
        )
        == 2
    )
    assert out.read_text() == "previous run\n"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--optimizer", "lion"], "unknown optimizer 'lion' (installed: adam, rmsprop, sgd)"),
        (["--lr", "-1"], "learning rate must be a finite number above 0"),
        (["--lr", "nan"], "learning rate"),
        (["--batch-size", "0"], "batch size must be a whole number from 1 to 60000"),
        (["--epochs", "0"], "epochs must be"),
        (["--epochs", "two"], "invalid int value"),
        (["--opt-param", "warp=9"], "sgd has no parameter 'warp'"),
        (["--opt-param", "momentum=lots"], "momentum: 'lots' is not a number"),
        (["--opt-param", "momentum=2"], "momentum: 2 is out of range"),
        (["--opt-param", "momentum"], "is not KEY=VALUE"),
        (["--loss", "hinge"], "unknown loss 'hinge'"),
        (["--device", "tpu"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny_root, args, words, capsys):
    from fmnist_gui.cli import main

    assert main(["--data-dir", str(tiny_root), "--no-download", *args]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert words in err


def test_bad_input_in_a_real_process(tiny_root):
    result = run_cli("--data-dir", tiny_root, "--no-download", "--optimizer", "lion")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("fmnist-train: error: ")
    assert result.stderr.count("\n") == 1


def test_missing_data_it_cannot_fetch_is_exit_2(tmp_path, monkeypatch, capsys):
    from fmnist_gui.cli import main

    monkeypatch.setenv("FMNIST_GUI_SYSTEM_DATASET", str(tmp_path / "no-package"))
    assert main(["--data-dir", str(tmp_path / "nowhere"), "--no-download"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert str(tmp_path / "nowhere") in err
    assert "dataset-fashion-mnist" in err


def test_prepare_data(tiny_root, capsys):
    from fmnist_gui.cli import main

    assert main(["--data-dir", str(tiny_root), "--prepare-data", "--no-download"]) == 0
    assert "is ready in" in capsys.readouterr().out


def test_divergence_exits_nonzero_with_reason(tiny_root, capsys):
    from fmnist_gui.cli import main

    assert main(["--data-dir", str(tiny_root), "--no-download", "--lr", "1e9", "--seed", "0"]) == 3
    err = capsys.readouterr().err
    assert "diverged" in err
    assert "lower learning rate" in err
